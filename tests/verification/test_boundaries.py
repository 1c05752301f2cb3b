"""Module boundaries: no check imports another check, no private name crosses a package."""

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


def _is_check_module(dotted: str) -> bool:
    """``verification.checks.NAME`` with a public NAME (a private ``_helper`` module of the package is not a check)."""
    parts = dotted.split(".")
    return len(parts) == 3 and parts[:2] == ["verification", "checks"] and not parts[2].startswith("_")


def test_no_check_imports_another_check():
    offenders = []
    for path in sorted((REPO / "verification" / "checks").glob("*.py")):
        for module, names in _imports(path):
            targets = [module] + [f"{module}.{n}" for n in names]
            if any(_is_check_module(t) for t in targets):
                offenders.append(f"{path.relative_to(REPO)} imports {module} {names}")
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
