"""`iclkd bench perf` in its tiny mode: rows follow the schema, like is compared with like, no row beats the limit."""

import importlib.util
import json
import math

import jax
import numpy as np
import pytest

perf = pytest.importorskip("benchmarks.perf")
from benchmarks import _perf_references as ref  # noqa: E402
from benchmarks import _perf_report as perf_report  # noqa: E402
from benchmarks import _perf_workloads as wl  # noqa: E402
from benchmarks._perf_peers import KernelSpec, numpy_mmd2, torch_mmd2  # noqa: E402
from iclkd_jax.mmd import DEFAULT_BLOCK_SIZE  # noqa: E402

#: how far above 100 % of the limit a row may land from timing noise alone (minima over repeats on a
#: shared machine); beyond it the limit model is wrong and must be fixed, never clipped (the report checks the same)
LIMIT_NOISE = perf_report.LIMIT_NOISE


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    argv = ["--tiny", "--only", "mmd", "features", "permutation",
            "--json", str(out / "perf.json"), "--markdown", str(out / "perf.md")]
    cache = jax.config.jax_enable_compilation_cache
    try:
        assert perf.main(argv) == 0
    finally:  # the bench turns the persistent compilation cache off (real compiles): on again for the later tests
        jax.config.update("jax_enable_compilation_cache", cache)
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
    assert {r["path"] for r in mmd} == {"dense", f"blocked{DEFAULT_BLOCK_SIZE}"}   # both sides of the crossover (64, 300)
    assert {r["name"].split("/")[1] for r in mmd} == {"rbf", "laplace", "linear", "exp", "product"}
    assert all(r["sklearn_s"] is not None for r in mmd if "/rbf/" in r["name"])
    assert all(r["numpy_s"] is not None for r in mmd if "/rbf/" in r["name"] or "/product/" in r["name"])


def test_every_value_agrees_with_the_float64_reference(report):
    """Ours and every peer compute the right statistic (errors in units of sum|terms|, the only scale a difference has)."""
    data, _ = report
    mmd = [r for r in data["rows"] if r["name"].startswith("mmd2/")]
    for row in mmd:
        for name, err in [("ours", row["err_in_scale"]), *((p, v["err_in_scale"]) for p, v in row["peers"].items())]:
            assert err is not None and err <= perf_report.value_bound(row), (row["name"], row["n"], row["dtype"], name, err)


def test_peers_run_beside_every_mmd_row_and_skipped_ones_are_named(report):
    """numpy (always) and torch (installed here) beside every row, the fastest named; a missing peer is listed as skipped."""
    from benchmarks._perf_peers import installed_peers
    data, md = report
    ready, skipped = installed_peers()
    assert set(data["meta"]["peers"]) == set(ready) and set(data["meta"]["skipped_peers"]) == set(skipped)
    assert "numpy" in ready
    for row in (r for r in data["rows"] if r["name"].startswith("mmd2/")):
        assert set(ready) <= set(row["peers"])
        assert row["fastest_peer"] in ready
        assert row["speedup_fastest_peer"] == pytest.approx(row["peers"][row["fastest_peer"]]["s"] / row["ours_s"])
        assert all(p["s"] >= row["peers"][row["fastest_peer"]]["s"] for name, p in row["peers"].items() if name in ready)
    for name in skipped:
        assert name in md


def test_no_implementation_beats_the_limit(report):
    """The limit is the machine's floor: neither ours nor any peer may beat it (beyond noise), or the model is wrong.

    A sanity check on rates measured in the same run, never a timing assertion: a fraction above 1 can
    only come from a rate measured too low (the model takes the highest seen), not from a slow machine.
    """
    data, _ = report
    fractions = {(r["name"], r["n"], r["dtype"], "ours"): r["limit_fraction"] for r in data["rows"] if r["limit_fraction"]}
    fractions.update({(r["name"], r["n"], r["dtype"], name): p["limit_fraction"] for r in data["rows"]
                      for name, p in r.get("peers", {}).items() if p["limit_fraction"]})
    assert fractions and max(fractions.values()) <= LIMIT_NOISE, {k: v for k, v in fractions.items() if v > LIMIT_NOISE}


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
    with_peers = [r for r in data["rows"] if r.get("peers") is not None]
    # three tables, one header each: every row; the MMD^2 rows against their peers; the targets check
    assert with_peers and len(table) == 3 + len(data["rows"]) + 2 * len(with_peers)
    assert "same dtype" in md


def test_markdown_checks_every_target(report):
    """One line per target of the issue, met or missed; the tiny run has no row at n >= 10^3 and says so."""
    _, md = report
    for target in ("the fastest peer", "floor at n = 10000, RBF", "floor at n = 10000, every kernel",
                   f"above {LIMIT_NOISE:.0%} of the limit", "of the float64 reference"):
        line = next(line for line in md.splitlines() if line.startswith("* ") and target in line)
        assert "**met**" in line or "**missed**" in line or "not measured" in line, line
    assert "not measured in this run" in md


def test_targets_name_every_missed_row():
    """The verdicts of a made-up report: a row behind its peer and one under the floor are named as missed."""
    def row(kind, dtype, n, speedup, fraction):
        return {"name": f"mmd2/{kind}/biased/default", "n": n, "dtype": dtype, "speedup_fastest_peer": speedup,
                "fastest_peer": "numpy", "limit_fraction": fraction, "peers": {"numpy": {"limit_fraction": 0.4}}}
    rows = [row("rbf", "float32", 10_000, 1.2, 0.60), row("rbf", "float64", 10_000, 1.01, 0.45),
            row("exp", "float32", 1_000, 2.0, 0.3), row("exp", "float32", 300, 0.5, 0.2)]
    lines = perf_report.targets({"rows": rows, "memory": None})
    speed = next(line for line in lines if "the fastest peer, every kernel" in line)
    assert "**missed**" in speed and "rbf/biased float64 n=10000 (1.01×)" in speed and "n=300" not in speed
    named = next(line for line in lines if "RBF (float32, float64)" in line)
    assert "**missed**" in named and "float64 n=10000 (45%)" in named and "float32 n=10000" not in named
    assert any("above 110% of the limit: **met**" in line for line in lines)


@pytest.mark.parametrize("kind", ["rbf", "laplace", "linear", "exp", "product"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_peers_compute_the_statistic(kind, estimator):
    """The NumPy and PyTorch peers (tiles of 64 rows: diagonal, off-diagonal and ragged tiles) against the float64 reference."""
    from verification.oracles import reference
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(150, 5)), rng.normal(size=(130, 5)) + 0.1
    wk = rng.normal(size=(3, 5)) * 0.3
    params = {"rbf": {"bandwidth": 2.0}, "laplace": {"bandwidth": 2.0}, "product": {"wk": wk}}.get(kind, {})
    if kind in ("exp", "product"):
        x, y = x / 3, y / 3
    want = reference.log_mmd2(x, y, kind, estimator=estimator, **params)
    value, scale = float(want.sign * np.exp(want.log_abs)), float(np.exp(want.log_terms))
    spec = KernelSpec(kind, params.get("bandwidth"), params.get("wk"))
    peers = [numpy_mmd2] + ([torch_mmd2] if importlib.util.find_spec("torch") else [])
    for dtype in (np.float32, np.float64):
        for peer in peers:
            got = peer(spec, x.astype(dtype), y.astype(dtype), estimator == "unbiased", tile=64)
            # the bound of perf_report.value_bound with n + m = 280, d = 5
            assert abs(got - value) <= (280 + 8 * 7) * float(np.finfo(dtype).eps) * scale, (peer.__name__, dtype, got, value)


def test_memory_child_reports_linear_memory_for_ours():
    """The memory workload's child process: the default call's peak stays within 1.5 x inputs + the fixed tile budget."""
    from benchmarks._perf_memory import TILE_BUDGET_BYTES, _child_run
    run = _child_run("ours", 3_000, 64)
    assert run["inputs_bytes"] == 2 * 3_000 * 64 * 4 and run["allowed_bytes"] == 1.5 * run["inputs_bytes"] + TILE_BUDGET_BYTES
    assert run["rss_before_inputs"] < run["rss_after_inputs"] <= run["rss_before_call"] <= run["peak_rss_bytes"]
    assert run["linear"] and math.isfinite(run["value"])


def test_read_rate_of_a_working_set_is_a_floor():
    """The rate of the largest measured working set not larger than the row's, raised to any faster larger one."""
    from benchmarks._timing import limit_seconds, read_rate
    rates = {"float32": {"matmul_flops": 1.0, "exp_per_s": 1.0, "read_bytes_per_s": 10.0,
                         "read_rates": {1 << 18: 30.0, 1 << 22: 40.0, 1 << 28: 10.0}}}
    assert read_rate(rates, "float32", 1e3) == 40.0          # below the smallest: its rate, raised by the 4 MiB one
    assert read_rate(rates, "float32", 5e6) == 40.0          # in the last-level cache
    assert read_rate(rates, "float32", 1e9) == 10.0          # DRAM
    assert limit_seconds(rates, "float32", bytes_read=8e6) == pytest.approx(8e6 / 40.0)
    assert read_rate({"float32": {"read_bytes_per_s": 10.0}}, "float32", 5e6) == 10.0


def test_interleaved_rounds_vary_the_order():
    """Every function once per round, and not always after the same one (a spinning peer would tax its follower)."""
    from benchmarks._timing import interleaved_best
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    best = interleaved_best(fns, rounds=8, more_rounds_s=0.0, settle_s=0.0)
    assert set(best) == set("abcd") and len(calls) == 32
    rounds = [calls[i:i + 4] for i in range(0, 32, 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)
    before_a = {r[r.index("a") - 1] for r in rounds if r.index("a") > 0}
    assert len(before_a) > 1
