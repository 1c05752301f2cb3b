"""The real-model checks, registered like every other check: ``<statement id>@<model>``.

Theorems 3.1(a) and 4.1 on every attention head of a real pretrained model (docs/statements.md#real-models;
docs/real-models.md): all-MiniLM-L6-v2 (``minilm``, :mod:`~verification.real_models.minilm_checks`) and
SmolLM2-135M (``smollm2``, :mod:`~verification.real_models.smollm2_checks`). Each check is listed by
``iclkd verify --list`` (marked unavailable, with the install command, when its model or extra is not
installed), runs under ``--real-model MODEL`` or ``--only ID`` (never in a plain ``iclkd verify``: loading a
model takes seconds to minutes), and is judged by ``--self-test`` with its own mutants. Its draws (the
demonstrations' order, the token subsamples) come from the run's key (``ctx.key``) and its sizes from the
profile (``Profile.real_prompts``, ``Profile.real_tokens``). Before a verdict, the model's forward pass is
validated against golden values (:mod:`~verification.real_models.validation`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

from verification.core.errors import ModelUnavailable
from verification.core.model import Check, CheckResult, RunContext
from verification.core.registry import register
from verification.real_models import minilm, minilm_checks, smollm2, smollm2_checks, validation
from verification.real_models.common import one_blas_thread
from verification.statements.thm_3_1a import Theorem31a
from verification.statements.thm_4_1 import Theorem41

#: the models ``--real-model`` accepts
MODELS = ("minilm", "smollm2")
_LOADERS = {"minilm": (minilm.check_available, minilm.load), "smollm2": (smollm2.check_available, smollm2.load)}


def check_available(name: str) -> None:
    """Raises :class:`ModelUnavailable` (with the install command) unless model ``name`` and its extra are installed."""
    if name not in MODELS:
        raise ValueError(f"unknown real model {name!r}; known: {', '.join(MODELS)}")
    _LOADERS[name][0]()


@functools.cache
def loaded(name: str) -> Any:
    """Model ``name``, loaded once per process (every check of the model and every mutant share it)."""
    check_available(name)
    return _LOADERS[name][1]()


class RealModelCheck(Check):
    """A statement checked on a real model: ``statement`` (the registered statement it instantiates),
    ``real_model`` (the model's name, the protocol's real-model hook) and ``measure(model, ctx)``."""

    statement: ClassVar[type[Check]]
    real_model: ClassVar[str]
    measure: ClassVar[Callable[[Any, RunContext], CheckResult]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.id = f"{cls.statement.id}@{cls.real_model}"
        cls.kind = cls.statement.kind
        cls.order = cls.statement.order + 1000  # after every statement, in the statements' order

    @classmethod
    def stated(cls) -> str:
        """The statement this check instantiates on the model."""
        return cls.statement.stated()

    @classmethod
    def available(cls) -> str | None:
        """Why the check cannot run in this installation (the model or its extra is missing), or None."""
        try:
            check_available(cls.real_model)
        except ModelUnavailable as err:
            return str(err)
        return None

    def run(self, ctx: RunContext) -> CheckResult:
        model = loaded(self.real_model)
        with one_blas_thread():
            # the theorems hold for any attention layer: a verdict is about this model only if its forward pass
            # is the model's (validation.ForwardMismatch, status error, otherwise)
            forward = validation.require_valid(model)
            result = type(self).measure(model, ctx)
        result.figures["forward_validation"] = forward.figures()
        return result


@register
class Theorem31aOnMiniLM(RealModelCheck):
    statement, real_model = Theorem31a, "minilm"
    title = "Theorem 3.1(a) on the 72 attention heads of all-MiniLM-L6-v2 (BERT encoder, 6 layers)"
    mutants = minilm_checks.MUTANTS_31
    measure = staticmethod(minilm_checks.check_31a)


@register
class Theorem41OnMiniLM(RealModelCheck):
    statement, real_model = Theorem41, "minilm"
    title = "Theorem 4.1 on every head of all-MiniLM-L6-v2, token samples of three text domains"
    mutants = minilm_checks.MUTANTS_41
    measure = staticmethod(minilm_checks.check_41)


@register
class Theorem31aOnSmolLM2(RealModelCheck):
    statement, real_model = Theorem31a, "smollm2"
    title = "Theorem 3.1(a) on the 270 query heads of SmolLM2-135M (GQA, RoPE, causal mask)"
    mutants = smollm2_checks.MUTANTS_31
    measure = staticmethod(smollm2_checks.check_31a)


@register
class Theorem41OnSmolLM2(RealModelCheck):
    statement, real_model = Theorem41, "smollm2"
    title = "Theorem 4.1 on every query head of SmolLM2-135M, position-aware product kernel"
    mutants = smollm2_checks.MUTANTS_41
    measure = staticmethod(smollm2_checks.check_41)
