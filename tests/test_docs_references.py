"""What the docstrings, comments, help texts and documents name exists: a module path, a file, a check id, a document.

A module or package is moved, a check renamed, a document retired; the prose that names it is not compiled, so
nothing else notices. Every ``.py``, ``.md`` and ``.toml`` file of the project is read as text:

* a dotted name of one of the project's packages (``verification.cases.shift_cases.agreement``) must name a module
  that exists, and the name after the module (if any) must be defined at the module's top level: the module that
  defines a function, not a former home of it;
* a path into the project (``verification/oracles/reference.py``, ``docs/statements.md``) must exist;
* a check id (``thm-4.1``, ``thm-3.1a@minilm``) must be a statement's id, on a real model the suite knows;
* a Markdown link between documents must lead to one, and no file cites a document outside the repository.

Nothing is imported: modules are found on disk and read with ``ast``, so the test takes about a second.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("verification", "iclkd_jax", "benchmarks", "experiments")
SUFFIXES = (".py", ".md", ".toml")

#: ``verification.core.registry.register``; not inside a longer dotted or path-like word
DOTTED = re.compile(rf"(?<![\w./-])((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)")
#: ``verification/oracles/reference.py``, ``docs/statements.md``; a URL's path is not the project's
PATH = re.compile(rf"(?<![\w./:-])((?:{'|'.join(PACKAGES)}|tests|docs)/[\w./-]*[\w/])")
#: ``thm-4.1``, ``lemma-eta``, ``thm-3.1a@minilm``; not a section anchor (``statements.md#thm-4-1``,
#: ``<a id="thm-4-1">``); a file named after a check (``thm-4.1.png``) is named by its id
CHECK_ID = re.compile(r'(?<![\w#./-])(?<!id=")((?:thm|lemma|conj)-[a-z0-9]+(?:[.-][a-z0-9]+)*?)(@\w+)?'
                      r"(?:\.(?:png|json|html|md|npz))?(?![\w.-]*\w)")
#: ids that name no statement on purpose, with the reason
NOT_STATEMENTS = {"thm-9.9": "an unknown id, for the command line's error (tests/verification/test_cli_fuzz.py)"}
#: a Markdown link to a document: ``[statements.md](statements.md#thm-4-1)``
LINK = re.compile(r"\]\(([^)#\s:]+\.md)(?:#[^)]*)?\)")
#: documents outside the repository, which nothing may cite: the specification the project was built from
OUTSIDE = re.compile(r"\bTHEOREMS\.md\b")


def project_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "pyproject.toml"]
    for top in (*PACKAGES, "tests", "docs"):
        files += sorted(p for p in (REPO / top).rglob("*") if p.suffix in SUFFIXES and "__pycache__" not in p.parts)
    return files


FILES = [p for p in project_files() if p != Path(__file__).resolve()]  # not this file's own examples


def module_file(parts: list[str]) -> Path | None:
    base = REPO.joinpath(*parts)
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


@functools.cache
def top_level_names(path: Path) -> frozenset[str]:
    """The names a module binds at its top level (definitions, assignments, imports, also under if/try)."""
    names: set[str] = set()

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return frozenset(names)


def dotted_problem(dotted: str) -> str | None:
    """Why ``dotted`` names nothing, or None: its longest module prefix must exist and bind the next name."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        path = module_file(parts[:k])
        if path is None:
            continue
        if k == len(parts) or parts[k].startswith("__") or parts[k] in top_level_names(path):
            return None
        return f"{'.'.join(parts[:k])} defines no {parts[k]}"
    return "no such module"


def path_exists(text: str) -> bool:
    """A path into the project exists (``iclkd_jax/__init__``: a module named without ``.py``; ``tests/x/test_``:
    the prefix of file names, as an f-string builds them)."""
    path = REPO / text
    if path.exists() or path.with_suffix(".py").is_file():
        return True
    return text.endswith("_") and path.parent.is_dir() and any(p.name.startswith(path.name) for p in path.parent.iterdir())


def statement_ids() -> set[str]:
    """The ids the statement folders declare (``id = "thm-4.1"`` in each ``check.py``)."""
    ids = set()
    for path in (REPO / "verification" / "statements").glob("*/check.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["id"]:
                ids.add(ast.literal_eval(node.value))
    return ids


def real_models() -> set[str]:
    """``MODELS`` of verification/real_models/checks.py (the models of ``ID@MODEL``)."""
    tree = ast.parse((REPO / "verification" / "real_models" / "checks.py").read_text(encoding="utf-8"))
    return next(set(ast.literal_eval(node.value)) for node in tree.body
                if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["MODELS"])


def _findings(pattern: re.Pattern, judge, files=None) -> list[str]:
    out = []
    for path in FILES if files is None else files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in pattern.finditer(line):
                problem = judge(match, path)
                if problem:
                    out.append(f"{path.relative_to(REPO)}:{number}: {match.group(0)} ({problem})")
    return out


def test_the_scan_reads_the_project():
    names = {p.relative_to(REPO).as_posix() for p in FILES}
    assert {"README.md", "docs/statements.md", "verification/io/html.py", "tests/verification/test_boundaries.py"} <= names
    assert len(statement_ids()) >= 10 and {"minilm", "smollm2"} <= real_models()


def test_dotted_module_names_exist():
    assert _findings(DOTTED, lambda m, _: dotted_problem(m.group(1))) == []


def test_paths_into_the_project_exist():
    assert _findings(PATH, lambda m, _: None if path_exists(m.group(1)) else "no such file or folder") == []


def test_check_ids_are_statements_on_known_models():
    ids, models = statement_ids(), real_models()

    def judge(match, _):
        if match.group(1) in NOT_STATEMENTS:
            return None
        if match.group(1) not in ids:
            return "no statement has this id"
        if match.group(2) and match.group(2)[1:] not in models:
            return f"no real model {match.group(2)[1:]!r}"
        return None

    assert _findings(CHECK_ID, judge) == []


def test_links_lead_to_documents_of_the_repository():
    documents = [p for p in FILES if p.suffix == ".md"]
    assert _findings(LINK, lambda m, path: None if (path.parent / m.group(1)).is_file() else "no such document",
                     documents) == []
    assert _findings(OUTSIDE, lambda m, _: "not in the repository: cite docs/statements.md") == []


@pytest.mark.parametrize(("text", "problem"), [
    ("verification.shift_cases.agreement", "verification defines no shift_cases"),
    ("verification.nowhere", "verification defines no nowhere"),
    ("nowhere.at.all", "no such module"),
    ("verification.core.registry.case_quantiles", "verification.core.registry defines no case_quantiles"),
    ("verification.cases.shift_cases.agreement", None),
    ("verification.core.model.RunContext.checkpoint", None),
    ("iclkd_jax.__file__", None),
])
def test_a_moved_name_is_found(text, problem):
    assert dotted_problem(text) == problem


def test_a_retired_path_id_or_document_is_found():
    assert not path_exists("verification/checks/thm_4_1.py") and path_exists("verification/statements/thm_4_1/")
    assert path_exists("tests/iclkd_jax/test_") and not path_exists("tests/nowhere/test_")
    found = CHECK_ID.finditer('thm-4.1-real, thm-4.1@minilm.json, statements.md#thm-4-1, <a id="thm-4-1">')
    assert [(m.group(1), m.group(2)) for m in found] == [("thm-4.1-real", None), ("thm-4.1", "@minilm")]
    assert [m.group(1) for m in LINK.finditer("[a](statements.md#thm-4-1), [b](../README.md), [c](https://x.md)")] == [
        "statements.md", "../README.md"]
