"""The Hypothesis cases of a seed do not depend on which modules are imported (the reports' reproducibility).

Hypothesis sometimes draws a literal constant found in the source of the *local* modules loaded in the
process; the cases of one seed (and the per-case quantiles of every check that explores) would then
change with the import set (``iclkd verify --only X`` against the full run, the CLI against the pytest
plugin) and with every literal edited anywhere in the suite.
"""

from __future__ import annotations

import importlib.util
import sys

from hypothesis import strategies as st

from verification.cases.explore import explore

CASES = st.tuples(st.floats(-4.0, 4.0), st.integers(-1000, 1000), st.floats(0.0, 1.0))


def cases(seed: int) -> list:
    return [case for case, _ in explore(CASES, lambda case: None, max_examples=300, seed_value=seed).records]


def test_the_same_seed_gives_the_same_cases_whatever_is_imported(tmp_path):
    first = cases(7)
    assert cases(7) == first  # the same seed, the same cases
    # a module with literals of every kind the strategy draws, imported between the two runs
    source = tmp_path / "iclkd_constants_probe.py"
    source.write_text("FLOATS = (0.3141592653, -2.718281828, 0.5772156649, 1.6180339887, 3.1415926535)\n"
                      "INTEGERS = (271, -314, 577, 997, -161)\n")
    spec = importlib.util.spec_from_file_location("iclkd_constants_probe", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["iclkd_constants_probe"] = module
    try:
        spec.loader.exec_module(module)
        assert cases(7) == first
    finally:
        del sys.modules["iclkd_constants_probe"]
    assert cases(8) != first  # the seed still decides
