"""Which public functions of ``iclkd_jax`` the verdicts of ``iclkd verify`` exercise.

Every public function of the library that computes a quantity of a statement of docs/statements.md must be
called by ``iclkd verify`` on its own cases: otherwise a bug in it could never change a verdict.
:func:`public_functions` lists the library's public functions; :func:`trace_calls` runs a piece of
code with each of them wrapped by a counter (in every module namespace that holds it, so
``ik.mmd2``, ``from iclkd_jax.mmd import mmd2`` and the library's internal calls all count; calls
made while JAX traces a jitted function count too). ``tests/verification/test_coverage.py`` runs
the smoke profile under it in a fresh process (so no jit cache hides a call) and fails when a
public function is neither called nor listed in :data:`OUTSIDE_STATEMENTS` with a reason.

:data:`OUTSIDE_STATEMENTS` is the one list of public functions that compute no quantity of a
statement (constructors, validation, plumbing, ...), each with
the reason; :data:`NOT_YET_COVERED` lists the ones that do compute such a quantity but no check
calls yet (an honest gap, not an exemption: the test reports them and fails if one becomes called
without being moved out of the list).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import pkgutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator

#: public functions that compute no quantity of a statement: ``{"module.name": reason}``
OUTSIDE_STATEMENTS: dict[str, str] = {
    # token distributions: inputs of experiments and benchmarks, not quantities of a statement
    "iclkd_jax.distributions.gaussian": "an unbounded token law: Theorem 3.2 needs bounded support and refuses it "
                                        "(tests/verification/test_thm_3_2.py); used by the experiments",
    "iclkd_jax.distributions.student_t": "an unbounded (heavy-tailed) token law, refused by Theorem 3.2 like gaussian",
    "iclkd_jax.distributions.shift_family": "a family of token laws for the experiments and the tightness benchmark; "
                                            "the checks build their shift cases in verification/cases/shift_cases.py",
    "iclkd_jax.distributions.scale_family": "as shift_family: an input family, not a quantity",
    "iclkd_jax.distributions.mixture_weight_family": "as shift_family: an input family, not a quantity",
    "iclkd_jax.random.random_attention_weights": "draws random weights for examples and experiments; the checks draw "
                                                 "theirs from verification/cases/strategies.py",
    # the trained Flax model of the experiments (docs/experiments.md), not a statement
    # spreading draws over devices: changes where, not what, is computed
    "iclkd_jax.sharding.device_mesh": "device plumbing; results are the same on 1 or N devices "
                                      "(tests/iclkd_jax/test_sharding.py)",
    "iclkd_jax.sharding.gather": "device plumbing (as device_mesh)",
    "iclkd_jax.sharding.initialize_distributed": "starts jax.distributed (iclkd launch), no quantity",
    "iclkd_jax.sharding.monte_carlo": "device plumbing: vmaps draws over a mesh (as device_mesh)",
    "iclkd_jax.sharding.sharded_vmap": "device plumbing (as device_mesh)",
}

#: public functions exercised by ``iclkd verify`` outside the registry's checks: ``{name: where}``
EXERCISED_ELSEWHERE: dict[str, str] = dict.fromkeys(
    ("iclkd_jax.llama.apply_rope", "iclkd_jax.llama.config_shapes", "iclkd_jax.llama.llama_forward",
     "iclkd_jax.llama.rms_norm", "iclkd_jax.llama.rope_angles", "iclkd_jax.llama.validate_params"),
    "iclkd verify --real-model smollm2 (thm-3.1a@smollm2, thm-4.1@smollm2; needs the llm extra and the model file; "
    "tests/verification/test_smollm2.py)")

#: public functions that compute a quantity of a statement but that no check calls yet: ``{name: what is missing}``
NOT_YET_COVERED: dict[str, str] = {
}


def public_functions() -> dict[str, Callable]:
    """``{"iclkd_jax.<module>.<name>": function}`` for every public function defined in a public module of ``iclkd_jax``.

    Public: the name and its module have no leading underscore (re-exports by ``iclkd_jax/__init__``
    resolve to their defining module). Classes (results, weights, kernels as data) are not listed.
    """
    import iclkd_jax

    found: dict[str, Callable] = {}
    modules = [iclkd_jax] + [importlib.import_module(m.name)
                             for m in pkgutil.iter_modules(iclkd_jax.__path__, "iclkd_jax.")
                             if not m.name.rsplit(".", 1)[-1].startswith("_")]
    for module in modules:
        for name, obj in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(obj):
                continue
            home = getattr(obj, "__module__", "") or ""
            if not home.startswith("iclkd_jax") or any(part.startswith("_") for part in home.split(".")[1:]):
                continue
            found[f"{home}.{obj.__name__}"] = obj
    return dict(sorted(found.items()))


@contextlib.contextmanager
def trace_calls(prefixes: tuple[str, ...] = ("iclkd_jax", "verification", "benchmarks", "experiments")
                ) -> Iterator[Counter]:
    """Counts calls of :func:`public_functions` inside the block; yields the ``Counter`` (name -> calls).

    Each function is replaced by a counting wrapper in every loaded module (under ``prefixes``) whose
    namespace holds it, and restored on exit.
    """
    functions = public_functions()
    calls: Counter = Counter()
    patched: list[tuple[object, str, object]] = []

    def wrap(name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def counted(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return counted

    wrappers = {id(fn): wrap(name, fn) for name, fn in functions.items()}
    originals = {id(fn): fn for fn in functions.values()}
    try:
        for module_name, module in list(sys.modules.items()):
            if module is None or not module_name.startswith(prefixes):
                continue
            namespace = vars(module)
            for attr, value in list(namespace.items()):
                if id(value) in wrappers and originals[id(value)] is value:
                    patched.append((module, attr, value))
                    setattr(module, attr, wrappers[id(value)])
        yield calls
    finally:
        for module, attr, value in patched:
            setattr(module, attr, value)
