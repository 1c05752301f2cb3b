"""Reading a check's false-alarm margin from its result (the ``false_alarm_margin`` hook of
:mod:`verification.core.protocol`; ``iclkd bench false-alarms``).

A margin component is one judged quantity over the threshold past which the check says ``violated``;
these helpers read the quantities from a :class:`~verification.core.model.CheckResult`'s figures and
leave out a component the result does not carry (a check that judged nothing of that kind). A NaN or an
infinity is kept: it makes the margin infinite, and the false-alarm report names it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

#: the start of the meaning of a margin read from a check whose ``worst`` is already a ratio to its tolerance
ALREADY_A_RATIO = "its `worst` is already a ratio to the tolerance (tolerance 1): "


def number(value: Any) -> float | None:
    """``value`` as a float (NaN and infinities included: they make the margin infinite), None if missing."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def worst_over_tolerance(result) -> dict[str, float]:
    """``worst / tolerance``, when the result has both and the tolerance is positive."""
    worst, tolerance = number(result.worst), number(result.tolerance)
    if worst is None or tolerance is None or not tolerance > 0:
        return {}
    return {"worst/tolerance": worst / tolerance}


def figure(result, *path: str) -> Any:
    """``result.figures[path[0]][path[1]]...``, or None where a key is missing."""
    value: Any = result.figures
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def max_of(values: Iterable[Any]) -> float | None:
    """The largest of the numbers among ``values`` (NaN if one is NaN), None if there are none."""
    numbers = [v for v in (number(x) for x in values) if v is not None]
    if any(math.isnan(v) for v in numbers):
        return math.nan
    return max(numbers, default=None)


def components(**named: float | None) -> dict[str, float]:
    """The named components that are present, ``snake_case`` names written with spaces."""
    return {name.replace("_", " "): value for name, value in named.items() if value is not None}
