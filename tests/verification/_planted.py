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
