"""Module boundaries: no statement imports another statement, no private name crosses a package."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("iclkd_jax", "verification", "benchmarks", "experiments")
#: known offenders, each with its owner; remove an entry when it is fixed (the test then guards it)
KNOWN_PRIVATE_IMPORTS: set[str] = set()


def _imports(path: Path):
    """``(module, names)`` for every import in ``path`` (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def _sources():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def _other_statement(dotted: str, folder: str) -> str | None:
    """The statement folder that ``dotted`` (a module, or a name in one) belongs to, if it is not ``folder``."""
    parts = dotted.split(".")
    if len(parts) >= 3 and parts[:2] == ["verification", "statements"] and parts[2] != folder:
        return parts[2]
    return None


def test_no_statement_imports_another_statement():
    """A statement's folder imports nothing of another statement's folder, except that a tightness sweep may run on
    another statement's samples (its ``tightness`` module's stream name)."""
    folders = sorted(p.parent for p in (REPO / "verification" / "statements").glob("*/__init__.py"))
    assert len(folders) >= 10
    offenders = []
    for folder in folders:
        for path in sorted(folder.glob("*.py")):
            for module, names in _imports(path):
                for target in [module] + [f"{module}.{n}" for n in names]:
                    other = _other_statement(target, folder.name)
                    shared_samples = path.name == "tightness.py" and module == f"verification.statements.{other}.tightness"
                    if other and not shared_samples:
                        offenders.append(f"{path.relative_to(REPO)} imports {module} {names}")
                        break
    assert not offenders, offenders


def test_no_private_name_imported_across_packages():
    offenders = []
    for path in _sources():
        package = path.relative_to(REPO).parts[0]
        for module, names in _imports(path):
            if module.split(".")[0] not in PACKAGES or module.split(".")[0] == package:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or any(part.startswith("_") and not part.startswith("__") for part in module.split(".")):
                offenders.append(f"{path.relative_to(REPO)}: from {module} import {names}")
    assert set(offenders) <= KNOWN_PRIVATE_IMPORTS, sorted(set(offenders) - KNOWN_PRIVATE_IMPORTS)
