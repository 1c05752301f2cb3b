"""Running the real-model checks of one model: ``iclkd verify --real-model minilm|smollm2``."""

from __future__ import annotations

from verification.core.guard import guarded
from verification.core.model import PROFILES, CheckResult
from verification.real_models import minilm, minilm_checks, smollm2, smollm2_checks
from verification.real_models.common import one_blas_thread

MODELS = ("minilm", "smollm2")


def _tables(model) -> tuple[dict, dict]:
    """``(CHECKS, RUNNERS)`` of the model's kind: all-MiniLM-L6-v2 here, SmolLM2 in :mod:`verification.real_smollm2`."""
    if isinstance(model, minilm.MiniLM):
        return minilm_checks.CHECKS, minilm_checks.RUNNERS
    return smollm2_checks.CHECKS, smollm2_checks.RUNNERS


def check_available(name: str):
    """Raises ``ModelUnavailable`` (with the install command) unless model ``name`` and its extra are installed."""
    if name not in MODELS:
        raise ValueError(f"unknown real model {name!r}; known: {', '.join(MODELS)}")
    if name == "minilm":
        return minilm.check_available()
    return smollm2.check_available()


def _load(name: str):
    if name == "minilm":
        return minilm.load()
    return smollm2.load()


def run_check(check_id: str, model, *, seed: int = 0, profile: str = "default",
              mutant: str | None = None) -> CheckResult:
    """One real-model check on a loaded model (:class:`minilm.MiniLM` or :class:`verification.smollm2.SmolLM2`);
    an exception inside it is reported as status ``error`` (:func:`runner.guarded`)."""
    checks, runners = _tables(model)
    if check_id not in checks:
        raise ValueError(f"unknown real-model check {check_id!r}; known: {', '.join(checks)}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if mutant is not None and mutant not in checks[check_id]:
        raise ValueError(f"{check_id} has no mutant {mutant!r}; it has {sorted(checks[check_id])}")

    def one():
        with one_blas_thread():
            return runners[check_id](model, seed, profile, mutant)

    return guarded(one, check_id=check_id, kind="theorem", seed=seed, mutant=mutant)


def run(name: str, *, seed: int = 0, profile: str = "default", mutant: str | None = None,
        model=None) -> list[CheckResult]:
    """The real-model checks ``thm-3.1a-real`` and ``thm-4.1-real`` on model ``name``.

    Args:
      name: ``"minilm"`` (all-MiniLM-L6-v2, layer 0) or ``"smollm2"`` (SmolLM2-135M, all 270 query heads;
        :mod:`verification.real_smollm2`).
      seed: permutes the demonstrations and draws the token subsamples.
      profile: ``smoke | quick | default | thorough``: how many prompts and tokens (see each model's ``SIZES``).
      mutant: a mutant of either check (the model's ``MUTANTS_31``, ``MUTANTS_41``); it is applied to the
        check that owns it, the other runs unmutated.
      model: an already loaded model (else it is loaded).

    Raises:
      minilm.ModelUnavailable: the extra or the model package is missing (the message gives the install
        command; SmolLM2's error is a subclass).
    """
    if name not in MODELS:
        raise ValueError(f"unknown real model {name!r}; known: {', '.join(MODELS)}")
    model = _load(name) if model is None else model
    checks, _ = _tables(model)
    owners = [cid for cid, mutants in checks.items() if mutant in mutants]
    if mutant is not None and not owners:
        raise ValueError(f"unknown mutant {mutant!r}; known: {sorted({m for ms in checks.values() for m in ms})}")
    return [run_check(cid, model, seed=seed, profile=profile, mutant=mutant if cid in owners else None)
            for cid in checks]
