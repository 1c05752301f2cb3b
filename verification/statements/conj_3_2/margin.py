"""Conjecture 3.2''s false-alarm margin (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``): which of its
judged quantities, each over its violation threshold, the margin is made of."""

from __future__ import annotations

from verification.core.margins import components, figure, number
from verification.core.protocol import Margin


def margin_components(result) -> dict[str, float]:
    return components(reference_agreement=number(figure(result, "sup_gap_vs_reference_round_off_units")))


MARGIN = Margin("the library/reference agreement of the sup gaps in round-off units (the conjecture's only `violated`); "
                "refuted/survives/inconclusive are counted, its slope CI is not a margin.", margin_components)
