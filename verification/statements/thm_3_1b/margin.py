"""Theorem 3.1(b)'s false-alarm margin (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``): which of its
judged quantities, each over its violation threshold, the margin is made of."""

from __future__ import annotations

from verification.core.margins import ALREADY_A_RATIO, components, figure, max_of, number
from verification.core.protocol import Margin


def margin_components(result) -> dict[str, float]:
    operators = figure(result, "operator_algebra_over_tolerance") or {}
    return components(
        taylor_step_over_remainder=number(figure(result, "max_step_error_over_taylor_bound")),
        explicit_maps_round_off=max_of([figure(result, f"max_{name}_over_tolerance") for name in (
            "grad_error", "to_matrix_error", "feature_error", "to_matrix_general")]
            + [v for k, v in operators.items() if k != "hs_condition_max"]),
        every_judgement=number(result.worst))


MARGIN = Margin(ALREADY_A_RATIO + "max error/tolerance over every case and the explicit maps, and the Taylor step's "
                "error over its Lagrange remainder bound (plus round-off), which is nearly attained for small positive "
                "logits: a margin near 1 from that component is the bound's tightness, not a tolerance about to fail.",
                margin_components)
