"""Theorem 4.1's false-alarm margin (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``): which of its
judged quantities, each over its violation threshold, the margin is made of."""

from __future__ import annotations

from collections.abc import Mapping

from verification.core.margins import components, figure, max_of, number
from verification.core.protocol import Margin


def margin_components(result) -> dict[str, float]:
    growth = figure(result, "linear_growth") or {}
    return components(
        linear_growth=max_of(f.get("score") for f in growth.values() if isinstance(f, Mapping)),
        every_score=number(figure(result, "max_score")),
        blocked_mmd2_agreement=number(figure(result, "max_agreement_in_round_off_units", "mmd2_blocked")))


MARGIN = Margin("max of every per-case score (bound ratio, attained two-sided ratio, library/reference agreement, each "
                "over its tolerance), the linear-growth score (exponent deviation over its tolerance, slope ratios) "
                "and the blocked-MMD agreement; Hypothesis edge cases are pass/fail.", margin_components)
