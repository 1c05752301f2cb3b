"""`iclkd bench perf` in its tiny mode: rows follow the schema, like is compared with like, no row beats the limit."""

import json
import math

import numpy as np
import pytest

perf = pytest.importorskip("benchmarks.perf")
from benchmarks import _perf_references as ref  # noqa: E402
from benchmarks import _perf_workloads as wl  # noqa: E402

#: how far above 100 % of the limit a row may land from timing noise alone (minima over repeats on a
#: shared machine); beyond it the limit model is wrong and must be fixed, never clipped
LIMIT_NOISE = 1.10


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
        assert {"matmul_flops", "exp_per_s", "read_bytes_per_s"} <= set(data["meta"]["rates"][dtype])
    names = {(row["name"], row["dtype"]) for row in data["rows"]}
    for dtype in ("float32", "float64"):       # the headline workloads in both dtypes
        assert {("mmd2/rbf/biased/default", dtype), ("mmd2/rbf/unbiased/default", dtype),
                ("mmd2/product/biased/default", dtype)} <= names
    assert {("mmd2_from_features/biased", "float32"), ("mmd_permutation_test/rbf", "float32")} <= names
    for row in data["rows"]:
        assert set(perf.SCHEMA_KEYS) <= set(row), row
        assert isinstance(row["name"], str) and isinstance(row["n"], int) and row["dtype"] in ("float32", "float64")
        for key in ("ours_s", "compile_s", "numpy_s", "sklearn_s", "limit_fraction"):
            assert row[key] is None or (isinstance(row[key], float) and math.isfinite(row[key]) and row[key] >= 0), (key, row)
        if row["ours_s"] is not None and row.get("limit_s") is not None:
            assert row["limit_fraction"] == pytest.approx(row["limit_s"] / row["ours_s"])
    mmd = [r for r in data["rows"] if r["name"].startswith("mmd2/")]
    assert {r["path"] for r in mmd} == {"dense", "blocked384"}           # both sides of the crossover (64, 300 rows)
    assert all(r["sklearn_s"] is not None for r in mmd if "/rbf/" in r["name"])
    assert all(r["numpy_s"] is not None for r in mmd)
    # every value agrees with the NumPy float64 reference: the bench measures the right computation
    tolerance = {"float64": 1e-10, "float32": 1e-3}
    assert all(r["rel_err_vs_numpy64"] < tolerance[r["dtype"]] for r in mmd), [(r["name"], r["rel_err_vs_numpy64"]) for r in mmd]


def test_no_row_exceeds_the_limit(report):
    """The limit is measured so that nothing beats it: a row above it (beyond noise) means the model is wrong."""
    data, _ = report
    fractions = {(r["name"], r["n"], r["dtype"]): r["limit_fraction"] for r in data["rows"] if r["limit_fraction"]}
    assert fractions and max(fractions.values()) <= LIMIT_NOISE, fractions


def test_the_references_keep_the_dtype():
    """NumPy references run in the dtype they are given (float32 ratios compare float32 with float32)."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x, y = rng.normal(size=(30, 4)).astype(dtype), rng.normal(size=(20, 4)).astype(dtype)
        wk = rng.normal(size=(2, 4)).astype(dtype)
        for gram in (ref.rbf(1.5), ref.product(wk)):
            assert gram(x, y).dtype == dtype
            assert np.asarray(ref.mmd2(gram, x, y, False)).dtype == dtype
            assert np.asarray(ref.mmd2(gram, x, y, True)).dtype == dtype
        assert np.asarray(ref.sklearn_mmd2(x, y, 1.5, False)).dtype == dtype
        out, log_z, _ = ref.kd_decomposition(wk, wk, wk, x, y)
        assert out.dtype == log_z.dtype == dtype


def test_mmd_work_counts_the_symmetric_halves():
    """n (n+1)/2 + m (m+1)/2 + n m entries, 2 (d + d_k) FLOPs and one exp each, plus the W^K projections."""
    flops, exps = wl.mmd_work(2, 3, 5)
    assert exps == 3 + 6 + 6 and flops == 2 * 5 * 15
    flops, exps = wl.mmd_work(2, 3, 5, key_dim=4)
    assert exps == 15 and flops == 2 * 9 * 15 + 2 * 5 * 5 * 4


def test_markdown_table_lists_every_row(report):
    data, md = report
    table = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + len(data["rows"])
    assert "same dtype" in md
