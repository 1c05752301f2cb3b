"""The README's Python examples run as written (they are the first code a user copies)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    namespace = {}
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), namespace)
    if "refuted" in namespace:
        assert namespace["holds"].counterexample is None
        assert max(namespace["holds"].measurements) <= 1 + 1e-12
        case, value = namespace["refuted"].counterexample
        assert value > -0.6931471805599453
