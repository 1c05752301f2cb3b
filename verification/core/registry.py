"""The registry of checks: :func:`register` adds a :class:`~verification.core.model.Check` class, :func:`ordered`
lists them in report order.

Registration is the only place a check's id meets the suite's machinery: every other capability (mutants,
search targets, certificate claims, tightness cells, real-model variants) is read from the class itself
through the hooks of :mod:`verification.core.protocol`. Which modules are imported (the built-in statements,
the plugins) is the engine's business (:func:`verification.engine.plugins.all_checks`).
"""

from __future__ import annotations

from verification.core.model import KINDS, REGISTRY, Check

__all__ = ["REGISTRY", "ordered", "register"]


def register(cls: type[Check]) -> type[Check]:
    """Registers ``cls`` under ``cls.id`` (a class decorator); a second class with the same id is an error.

    Raises:
      ValueError: ``cls.kind`` is not one of :data:`~verification.core.model.KINDS`, or the id is taken.
    """
    if cls.kind not in KINDS:
        raise ValueError(f"{cls.__name__}.kind must be one of {KINDS}")
    if cls.id in REGISTRY and REGISTRY[cls.id] is not cls:
        raise ValueError(f"check id {cls.id!r} registered twice")
    REGISTRY[cls.id] = cls
    return cls


def ordered() -> dict[str, type[Check]]:
    """The registry in report order: by each check's declared ``order``, then by id."""
    return dict(sorted(REGISTRY.items(), key=lambda item: (item[1].order, item[0])))
