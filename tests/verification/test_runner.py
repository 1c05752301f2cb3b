"""verification.engine.runner: the one wrapper of every check (registered or real-model): float64, timed, and an
exception becomes status ``error`` with its summary; Ctrl-C is not swallowed."""

from __future__ import annotations

import jax
import pytest

from verification.core.model import CheckResult
from verification.engine import runner
from verification.real_models import checks as real_model_checks


def test_an_exception_becomes_status_error_with_its_summary():
    def crash():
        raise ArithmeticError("planted")

    result = runner.guarded(crash, check_id="x", kind="lemma", seed=5, mutant="m")
    assert (result.status, result.kind, result.seed, result.mutant) == ("error", "lemma", 5, "m")
    assert result.summary == "check raised ArithmeticError: planted"
    assert "ArithmeticError" in result.figures["traceback"] and result.elapsed_s >= 0


def test_float64_inside_and_the_callers_mode_restored():
    seen = []

    def probe():
        seen.append(bool(jax.config.jax_enable_x64))
        return CheckResult(id="x", kind="theorem", status="holds", cases=1, worst=0.0, worst_label="-")

    with jax.enable_x64(False):
        assert runner.guarded(probe, check_id="x", kind="theorem", seed=0).status == "holds"
        assert not jax.config.jax_enable_x64
    assert seen == [True]


def test_keyboard_interrupt_stops_the_run():
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.guarded(interrupted, check_id="x", kind="theorem", seed=0)


def test_real_model_checks_use_the_same_wrapper(monkeypatch):
    def crash(model, ctx):
        raise RuntimeError("planted in a real-model check")

    monkeypatch.setattr(real_model_checks.Theorem31aOnMiniLM, "measure", staticmethod(crash))
    # a model never loaded: the planted measure ignores it, and its forward pass is taken as validated
    monkeypatch.setattr(real_model_checks, "loaded", lambda name: object())
    monkeypatch.setattr(real_model_checks.validation, "require_valid", lambda model: None)
    result = runner.run_check("thm-3.1a@minilm", seed=1, profile="smoke")
    assert result.status == "error" and "RuntimeError: planted in a real-model check" in result.summary


def test_mutants_are_never_caught_by_a_crash():
    assert not runner.mutant_caught("theorem", "holds", "error")
    assert runner.mutant_caught("lemma", "holds", "error", library_non_finite=True)  # the library's value overflowed
    assert not runner.mutant_caught("conjecture", "refuted", "error", library_non_finite=True)
    assert not runner.mutant_caught("conjecture", "refuted", "error")
    assert runner.mutant_caught("conjecture", "refuted", "survives")


def test_enable_x64_call_and_context_manager():
    import verification

    with jax.enable_x64(False):
        with verification.enable_x64():
            assert jax.config.jax_enable_x64
        assert not jax.config.jax_enable_x64
    before = jax.enable_x64.get_global()
    try:
        verification.enable_x64(False)
        assert not jax.enable_x64.get_global()
        verification.enable_x64()
        assert jax.enable_x64.get_global()
    finally:
        jax.config.update("jax_enable_x64", before)
