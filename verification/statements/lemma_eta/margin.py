"""The learning-rate lemma's false-alarm margin (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``): which of its
judged quantities, each over its violation threshold, the margin is made of."""

from __future__ import annotations

from verification.core.margins import ALREADY_A_RATIO, worst_over_tolerance
from verification.core.protocol import Margin

MARGIN = Margin(ALREADY_A_RATIO + "max abs log-space error/tolerance (random cases and anchors); the sharp-gap entropy "
                "sweep is pass/fail and not in it.", worst_over_tolerance)
