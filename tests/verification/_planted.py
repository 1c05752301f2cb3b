"""Simulated bugs in the library source for the check tests: patch a public function, retrace.

The checks call the library as ``iclkd_jax.<name>`` inside jitted, vmapped programs, so a patch is
only seen after the trace caches are cleared (done on entry and on exit).
"""

import contextlib

import jax

import iclkd_jax as ik


@contextlib.contextmanager
def planted(monkeypatch, name, make):
    """Replaces ``iclkd_jax.<name>`` by ``make(original)`` for the duration of the block."""
    original = getattr(ik, name)
    with monkeypatch.context() as patch:
        patch.setattr(ik, name, make(original))
        jax.clear_caches()
        try:
            yield
        finally:
            jax.clear_caches()


def near_duplicate_batch(size: int = 64, gap: float = 1e-9):
    """Random heads of shape (4, 2, 2, 4, 4) whose prompt is the target moved by ``gap`` (standard normal steps).

    ``MMD_k^2`` and ``||ΔW||^2`` are then about ``gap^2`` of their largest terms, far below float64's round-off
    resolution at logits of a few hundred: the library's ``MMD_k^2`` is round-off, often exactly 0 or negative.
    """
    import numpy as np

    from verification.cases.shift_cases import SHAPES, ShiftBatch, draw_shift_batches

    general, _ = draw_shift_batches(jax.random.key(5), SHAPES[1], size)
    steps = np.random.default_rng(0).standard_normal(general.target.shape)
    return ShiftBatch(general.wk, general.wv, general.target, general.target + gap * steps, general.log_eta)
