"""`iclkd bench perf` in its tiny mode: every row follows the JSON schema; the Markdown renders. Timings are not asserted."""

import json
import math

import pytest

perf = pytest.importorskip("benchmarks.perf")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    argv = ["--tiny", "--only", "mmd", "features", "permutation",
            "--json", str(out / "perf.json"), "--markdown", str(out / "perf.md")]
    assert perf.main(argv) == 0
    return json.loads((out / "perf.json").read_text()), (out / "perf.md").read_text()


def test_rows_follow_the_schema(report):
    data, _ = report
    assert data["meta"]["mode"] == "tiny" and data["meta"]["persistent_compilation_cache"] is False
    for dtype in ("float32", "float64"):
        assert set(data["meta"]["rates"][dtype]) == {"matmul_flops", "exp_per_s", "read_bytes_per_s"}
    names = {row["name"] for row in data["rows"]}
    assert {"mmd2/rbf/biased/dense", f"mmd2/rbf/unbiased/blocked{perf.BLOCK}", "mmd2_from_features/biased",
            "mmd_permutation_test/rbf"} <= names
    for row in data["rows"]:
        assert set(perf.SCHEMA_KEYS) <= set(row), row
        assert isinstance(row["name"], str) and isinstance(row["n"], int) and row["dtype"] in ("float32", "float64")
        for key in ("ours_s", "compile_s", "numpy_s", "sklearn_s", "limit_fraction"):
            assert row[key] is None or (isinstance(row[key], float) and math.isfinite(row[key]) and row[key] >= 0), (key, row)
        if row["ours_s"] is not None and row.get("limit_s") is not None:
            assert row["limit_fraction"] == pytest.approx(row["limit_s"] / row["ours_s"])
    rbf = [r for r in data["rows"] if r["name"].startswith("mmd2/rbf/")]
    assert all(r["sklearn_s"] is not None and r["numpy_s"] is not None for r in rbf)
    # the float64 rows agree with the NumPy float64 reference: the bench measures the right computation
    assert all(r["rel_err_vs_numpy64"] < 1e-10 for r in rbf if r["dtype"] == "float64")


def test_markdown_table_lists_every_row(report):
    data, md = report
    table = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + len(data["rows"])
