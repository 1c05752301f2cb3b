"""The feature-map lemma's false-alarm margin (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``): which of its
judged quantities, each over its violation threshold, the margin is made of."""

from __future__ import annotations

from collections.abc import Mapping

from verification.core.margins import ALREADY_A_RATIO, components, figure, max_of, number
from verification.core.protocol import Margin


def margin_components(result) -> dict[str, float]:
    slopes = figure(result, "slopes_[value,se]") or {}
    z = number(figure(result, "slope_z"))  # the budget's z that the run judged the slopes at
    reference = figure(result, "feature_maps_vs_reference_over_tolerance")
    return components(
        taylor_remainder=number(figure(result, "taylor_max_error_over_remainder")),
        slopes=max_of(abs(value + 0.5) / (z * se) for value, se in slopes.values() if se and z),
        features_vs_reference=max_of(reference.values()) if isinstance(reference, Mapping) else number(reference),
        **{f"{name}_deviation_over_allowance": number(value)
           for name, value in (figure(result, "deviation_over_allowance") or {}).items()},
        every_judgement=number(result.worst))


MARGIN = Margin(ALREADY_A_RATIO + "max of |slope+1/2|/(z se), the means', MSEs' and orthogonal-vs-iid deviations over "
                "their allowances (the statistical judgements, at the budget's level), features/reference "
                "error/tolerance and the Taylor error over its Lagrange remainder (plus round-off), which tends to 1 "
                "as the logit tends to 0: a margin near 1 from that component is the bound's tightness, not a "
                "tolerance about to fail.", margin_components)
