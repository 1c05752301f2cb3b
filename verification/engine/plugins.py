"""Which checks exist: the built-in statements, installed plugins and the user's own code
(:func:`all_checks`),  ``iclkd verify --plugin MODULE_OR_FILE`` and the entry-point group ``iclkd.checks``.

A plugin is an ordinary Python module (an importable name, or a ``.py`` file anywhere) that
subclasses :class:`verification.api.Check` and decorates it with :func:`verification.api.register`,
exactly like the statements under ``verification/statements/``. Loading it registers its checks; from then
on they run in ``iclkd verify``, ``iclkd verify --self-test`` (their mutants), ``--list``,
``--only`` and the JSON and Markdown reports, without touching the installed project.

* ``iclkd verify --plugin my_checks.py --plugin my_package.claims`` (repeatable): a path that
  names an existing file (or ends in ``.py``) is imported from that file; anything else is imported
  as a module name (from ``sys.path``, which includes the current directory's packages when run
  with ``python -m``).
* An installed distribution declares, in its ``pyproject.toml``::

      [project.entry-points."iclkd.checks"]
      my_claims = "my_package.claims"            # a module that registers its checks
      my_claim = "my_package.claims:MyCheck"     # or one Check subclass (registered if it is not yet)

  and every ``iclkd verify`` loads it (:func:`load_entry_points`, called by
  :func:`all_checks`).

Failures are loud: a missing file, an import error, a check id that is already taken or a
plugin that registers nothing raises :class:`PluginError` (``iclkd verify`` reports it in one line
and exits 2).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import verification.real_models.checks  # noqa: F401  (registers the real-model checks)
import verification.statements  # noqa: F401  (registers the built-in statements)
from verification.core.errors import PluginError
from verification.core.model import Check
from verification.core.registry import REGISTRY, ordered, register

#: the entry-point group scanned by :func:`load_entry_points`
ENTRY_POINT_GROUP = "iclkd.checks"

#: sys.path when the entry points were last scanned (installing a distribution changes it or restarts Python)
_SCANNED_PATH: tuple[str, ...] | None = None

#: the checks each plugin module registered when it was first loaded
_PLUGIN_CHECKS: dict[str, list[type[Check]]] = {}

#: entry points already loaded ({name: value}), so the registry loads each once per process
_LOADED_ENTRY_POINTS: dict[str, str] = {}


def _module_name_for(path: Path) -> str:
    stem = "".join(ch if ch.isalnum() else "_" for ch in path.stem)
    return f"iclkd_plugin_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def _import_file(path: Path) -> ModuleType:
    name = _module_name_for(path)
    if name in sys.modules:  # loaded before in this process (the same file): its checks are registered
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before executing: dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_plugin(spec: str) -> list[str]:
    """Imports the plugin ``spec`` (a ``.py`` file or a module name) and returns the ids of the checks it registered.

    Raises:
      PluginError: the file or module cannot be imported (the exception's summary is in the message),
        a check id is taken, or the plugin registered no check.
    """
    before = dict(REGISTRY)
    path = Path(os.path.expanduser(spec))
    is_file = spec.endswith(".py") or path.is_file()
    try:
        if is_file:
            if not path.is_file():
                raise PluginError(f"plugin {spec}: no such file")
            module = _import_file(path.resolve())
        else:
            module = importlib.import_module(spec)
    except PluginError:
        raise
    except Exception as err:
        raise PluginError(f"plugin {spec}: {type(err).__name__}: {err}") from err
    for cls in _PLUGIN_CHECKS.get(module.__name__, ()):  # loaded earlier in this process, unregistered since
        if cls.id not in REGISTRY:
            register(cls)
    added = [cid for cid in REGISTRY if cid not in before]
    mine = [cid for cid, cls in REGISTRY.items() if getattr(cls, "__module__", None) == module.__name__]
    ids = list(dict.fromkeys(added + mine))
    _PLUGIN_CHECKS.setdefault(module.__name__, [REGISTRY[cid] for cid in ids])
    if not ids:
        raise PluginError(f"plugin {spec} registered no check (decorate a verification.api.Check subclass "
                          f"with @verification.api.register)")
    return ids


def load_entry_points() -> list[str]:
    """Loads every entry point of the group ``iclkd.checks`` not loaded yet; returns the ids it registered.

    Raises:
      PluginError: an entry point fails to load (naming it and its distribution).
    """
    global _SCANNED_PATH
    if _SCANNED_PATH == tuple(sys.path):  # scanning costs ~10 ms and all_checks() is called for every check
        return []
    before = set(REGISTRY)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if _LOADED_ENTRY_POINTS.get(ep.name) == ep.value:
            continue
        try:
            obj = ep.load()
        except Exception as err:
            dist = getattr(getattr(ep, "dist", None), "name", "?")
            raise PluginError(f"entry point {ep.name} = {ep.value} (group {ENTRY_POINT_GROUP}, distribution "
                              f"{dist}) failed to load: {type(err).__name__}: {err}") from err
        if isinstance(obj, type) and issubclass(obj, Check) and REGISTRY.get(getattr(obj, "id", None)) is not obj:
            try:
                register(obj)
            except ValueError as err:
                raise PluginError(f"entry point {ep.name} = {ep.value}: {err}") from err
        _LOADED_ENTRY_POINTS[ep.name] = ep.value
    _SCANNED_PATH = tuple(sys.path)
    return [cid for cid in REGISTRY if cid not in before]


def all_checks() -> dict[str, type[Check]]:
    """Every registered check in report order: the built-in statements, the real-model checks whose model is
    installed, the installed plugins (entry points ``iclkd.checks``) and the plugins loaded so far."""
    load_entry_points()
    return ordered()
