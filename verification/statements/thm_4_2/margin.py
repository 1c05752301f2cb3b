"""Theorem 4.2's false-alarm margin (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``): which of its
judged quantities, each over its violation threshold, the margin is made of."""

from __future__ import annotations

from verification.core.margins import components, figure, number
from verification.core.protocol import Margin


def margin_components(result) -> dict[str, float]:
    return components(every_score=number(figure(result, "max_score")))


MARGIN = Margin("max of every per-case score (prediction and risk bounds, attained two-sided ratios, library/reference "
                "agreement, each over its tolerance); Hypothesis edge cases are pass/fail.", margin_components)
