"""Coverage of the library by the verdicts: the smoke profile of ``iclkd verify``, run under a call
tracer in a fresh process (no jit cache can hide a call), calls every public function of ``iclkd_jax`` that computes
a quantity of a statement; the others are listed, with a reason, in tests/verification/_coverage.py. The run
(tests/verification/_smoke_run.py) also writes the reports that tests/verification/test_reports.py reads."""

from __future__ import annotations

import _coverage as coverage
from _smoke_run import smoke_run


def test_every_public_function_is_exercised_or_listed(tmp_path_factory):
    _, run = smoke_run(tmp_path_factory)
    assert "error" not in run["statuses"].values(), run["statuses"]
    public = set(coverage.public_functions())
    called = set(run["calls"])
    listed = set(coverage.OUTSIDE_STATEMENTS) | set(coverage.EXERCISED_ELSEWHERE) | set(coverage.NOT_YET_COVERED)
    assert not (listed - public), f"listed but not public functions of iclkd_jax: {sorted(listed - public)}"
    missing = sorted(public - called - listed)
    assert not missing, ("public functions of iclkd_jax that no check calls and tests/verification/_coverage.py does not "
                         f"list (call them from a check, or list them with a reason): {missing}")
    newly = sorted(set(coverage.NOT_YET_COVERED) & called)
    assert not newly, f"now exercised: remove from coverage.NOT_YET_COVERED: {newly}"


def test_the_tracer_counts_calls_through_every_import_style():
    import iclkd_jax as ik
    from iclkd_jax import kernels

    with coverage.trace_calls() as calls:
        ik.linear_kernel()
        kernels.rbf_kernel(bandwidth=1.0)
    assert calls["iclkd_jax.kernels.linear_kernel"] == 1 and calls["iclkd_jax.kernels.rbf_kernel"] == 1
    assert ik.linear_kernel is kernels.linear_kernel  # restored
