"""Conjecture 4.1''s false-alarm margin (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``): which of its
judged quantities, each over its violation threshold, the margin is made of."""

from __future__ import annotations

from collections.abc import Mapping

from verification.core.margins import components, figure, max_of
from verification.core.protocol import Margin


def margin_components(result) -> dict[str, float]:
    per_kernel = figure(result, "per_kernel") or {}
    library = figure(result, "library_checks_in_round_off_units") or {}
    return components(
        kernel_agreement=max_of(k.get("max_agreement_in_round_off_units") for k in per_kernel.values()
                                if isinstance(k, Mapping)),
        library_checks=max_of(library.values()))


MARGIN = Margin("max library/reference agreement in round-off units over the kernels and the library's own checks "
                "(the conjecture's only `violated`); refuted/survives are counted; the permutation test is pass/fail.",
                margin_components)
