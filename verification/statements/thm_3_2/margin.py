"""Theorem 3.2's false-alarm margin (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``): which of its
judged quantities, each over its violation threshold, the margin is made of."""

from __future__ import annotations

from collections.abc import Mapping

from verification.core.margins import components, figure, max_of, number
from verification.core.protocol import Margin


def margin_components(result) -> dict[str, float]:
    settings = [s for s in (figure(result, "settings") or []) if isinstance(s, Mapping)]
    delta = number(figure(result, "delta"))
    cp = max_of(s.get("cp_lower") for s in settings)
    agreement = max_of([v for s in settings for v in (
        s.get("sup_gap_vs_reference_round_off_units"), s.get("max_quadratic_on_ball_vs_reference"),
        s.get("constants_vs_reference"),
        None if s.get("law_radial_moment_z") is None or not s.get("law_radial_moment_z_limit")
        else number(s["law_radial_moment_z"]) / number(s["law_radial_moment_z_limit"]))])
    return components(clopper_pearson_lower_over_delta=None if cp is None or not delta else cp / delta,
                      reference_agreement=agreement)


MARGIN = Margin("max of the Clopper-Pearson lower limit of the violation rate over δ (the statistical judgement) and "
                "the library/reference agreement in its tolerance units (sup gaps, quadratic maximum, constants, the "
                "law's radial moment in units of its z limit); its `worst` (gap/bound) may exceed 1 on a fraction δ "
                "of draws by the theorem and is not a margin; the solver guard and the Rademacher tests are pass/fail "
                "and not in it.", margin_components)
