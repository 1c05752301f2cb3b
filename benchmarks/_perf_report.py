"""The Markdown report of ``iclkd bench perf``."""

from __future__ import annotations


def fmt(v, spec=".3g"):
    return "–" if v is None else format(v, spec)


def _size(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def markdown(report) -> str:
    meta = report["meta"]
    lines = [f"Measured by `iclkd bench perf{' --quick' if meta['mode'] == 'quick' else ''}` on {meta['machine']} "
             f"({meta['devices']}), JAX {meta['jax']}, {meta['date']}. Times are minima over repeats, in seconds; "
             "×NumPy / ×sklearn are speed-ups of ours over the reference **in the same dtype** (NumPy and "
             "scikit-learn get arrays of the row's dtype); *limit* is the fraction of this machine's measured peak "
             "reached (the limit model in docs/performance.md; above 100 % would mean the model is wrong). "
             f"Load average at the start {fmt(meta['load_average'][0], '.1f')} on {meta['cpus']} CPUs"
             + (" (contended: read the ratios, not the seconds)." if meta["load_average"][0] > 0.5 * meta["cpus"] else "."),
             "",
             "Machine rates measured in the same run: " + "; ".join(
                 f"{dt}: matmul {r['matmul_flops'] / 1e9:.1f} GFLOP/s ({r['how']['matmul']}), "
                 f"exp {r['exp_per_s'] / 1e9:.2f} G/s ({r['how']['exp']})"
                 for dt, r in meta["rates"].items())
             + f"; read bandwidth {meta['rates']['float32']['read_bytes_per_s'] / 1e9:.1f} GB/s"
             + "".join(f", {_size(size)} in cache {rate / 1e9:.0f} GB/s"
                       for size, rate in sorted((int(k), v) for k, v in meta["rates"]["float32"].get("read_rates", {}).items())
                       if size < 1 << 26)
             + f" (each the highest of {meta.get('rate_measurements', 2)} measurements spread over the run).",
             "",
             "| workload | n | d | dtype | ours (s) | compile (s) | NumPy (s) | ×NumPy | sklearn (s) | ×sklearn | limit |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["rows"]:
        lines.append(f"| {r['name']} | {r['n']} | {fmt(r['d'])} | {r['dtype']} | {fmt(r['ours_s'])} | "
                     f"{fmt(r['compile_s'])} | {fmt(r['numpy_s'])} | {fmt(r['speedup_numpy'])} | "
                     f"{fmt(r['sklearn_s'])} | {fmt(r['speedup_sklearn'])} | {fmt(r['limit_fraction'], '.0%')} |")
    lines += _peer_table(report)
    lines += targets(report)
    mem = report.get("memory")
    if mem:
        mib = 2**20
        lines += ["", f"Memory of the default MMD^2 call (RBF, d = {mem['d']}, float32) and of each peer, one fresh "
                      "process per call: the inputs plus the peak RSS a warm call adds to them "
                      f"(criterion: at most 1.5 x the inputs + {mem['tile_budget_bytes'] / mib:.0f} MiB).", "",
                  "| n = m | inputs | implementation | call peak | allowed | linear |",
                  "| ---: | ---: | --- | ---: | ---: | --- |"]
        for r in mem["measured"]:
            for run in [r, *mem.get("peers", {}).get(str(r["n"]), {}).values()]:
                lines.append(f"| {r['n']} | {r['inputs_bytes'] / mib:.1f} MiB | {run['impl']} | "
                             f"{run['call_peak_bytes'] / mib:.1f} MiB | {run['allowed_bytes'] / mib:.1f} MiB | "
                             f"{'yes' if run['linear'] else 'no'} |")
        lines.append("")
        if mem.get("peak_rss_at_target_bytes") is not None:
            lines.append(f"At n = m = {mem['target_n']}: {mem['peak_rss_at_target_bytes'] / 2**20:.0f} MiB "
                         f"({mem['peak_rss_at_target_how']}).")
        if mem.get("xla_at_target"):
            x = mem["xla_at_target"]
            lines.append(f"XLA's buffer plan compiled at n = m = {mem['target_n']}: arguments "
                         f"{x['argument_size_in_bytes'] / 2**20:.0f} MiB, temporaries {x['temp_size_in_bytes'] / 2**20:.1f} MiB.")
    return "\n".join(lines) + "\n"


def _peer_table(report) -> list[str]:
    """The MMD^2 rows against their peers: seconds, the fastest peer named, every limit fraction, the load."""
    rows = [r for r in report["rows"] if r.get("peers") is not None]
    if not rows:
        return []
    names = sorted({name for r in rows for name in r["peers"]}, key=lambda name: (name in ("numpy-chunked", "sklearn"), name))
    skipped = report["meta"].get("skipped_peers") or {}
    lines = ["", "MMD^2 against its peers, **one run, same dtype, interleaved rounds** (seconds, minimum over the "
                 "rounds; in brackets the fraction of the limit each reaches; ×fastest = the fastest peer's time / "
                 "ours; load = 1-minute load average when the row was measured). "
             + ("Skipped peers: " + "; ".join(f"{name} ({why})" for name, why in skipped.items()) + "."
                if skipped else "Every peer was installed."),
             "",
             "| workload | n | dtype | ours | " + " | ".join(names) + " | fastest peer | ×fastest | load |",
             "| --- | ---: | --- | ---: | " + " | ".join("---:" for _ in names) + " | --- | ---: | ---: |"]
    for r in rows:
        def cell(seconds, fraction):
            return "–" if seconds is None else f"{seconds:.3g} ({fmt(fraction, '.0%')})"
        peers = [cell(r["peers"][name]["s"], r["peers"][name]["limit_fraction"]) if name in r["peers"] else "–"
                 for name in names]
        lines.append(f"| {r['name']} | {r['n']} | {r['dtype']} | {cell(r['ours_s'], r['limit_fraction'])} | "
                     + " | ".join(peers) + f" | {r['fastest_peer'] or '–'} | {fmt(r['speedup_fastest_peer'])} | "
                     f"{r['load_average']:.1f} |")
    return lines


#: the issue's targets for the default MMD^2: ahead of the fastest peer by this factor at n, m >= TARGET_MIN_N ...
TARGET_SPEEDUP = 1.05
TARGET_MIN_N = 1_000
#: ... and at least this fraction of the floor at n = m = FLOOR_N, per dtype
TARGET_FLOOR = {"float32": 0.55, "float64": 0.50}
FLOOR_N = 10_000
#: the rows the issue's "done when" names for the floor: RBF in both dtypes, the product kernel in float64
FLOOR_NAMED = (("rbf", "float32"), ("rbf", "float64"), ("product", "float64"))
#: the most any row (ours or a peer) may reach of the limit: beyond timing noise the model is wrong
LIMIT_NOISE = 1.10


def value_bound(row) -> float:
    """|value - reference| <= ((n + m) + 8 (d + 2)) eps sum|terms| for an MMD^2 row (ours and every peer).

    A sum of (n + m)^2 terms, each row of at most n + m summed in any order (error (n + m) eps of the
    row's absolute sum), the entries' own rounding (d + 2) eps |logit| amplified by exp with
    |logit| <= 8 here (RBF with h = sqrt(2 d), tokens / 8 for the exponential kernels).
    """
    import numpy as np
    return (2 * row["n"] + 8 * (row["d"] + 2)) * float(np.finfo(row["dtype"]).eps)


def targets(report) -> list[str]:
    """The issue's targets against this run: one row per MMD^2 workload, then one line per target, met or missed."""
    rows = [r for r in report["rows"] if r.get("peers") is not None]
    if not rows:
        return []
    lines = ["", "Targets check (the default `mmd2`; ×fastest = the fastest peer's time / ours, target "
                 f"≥ {TARGET_SPEEDUP} at n ≥ {TARGET_MIN_N}; floor = limit / ours, target "
                 + " / ".join(f"{v:.0%} ({k})" for k, v in TARGET_FLOOR.items()) + f" at n = {FLOOR_N}):", "",
             "| workload | n | dtype | ×fastest | fastest peer | floor | ahead | floor met |",
             "| --- | ---: | --- | ---: | --- | ---: | --- | --- |"]
    speed_missed, floor_missed, named_missed = [], [], []
    for r in rows:
        label = f"{r['name'].split('/')[1]}/{r['name'].split('/')[2]} {r['dtype']} n={r['n']}"
        ahead = floor_ok = "–"
        if r["n"] >= TARGET_MIN_N and r["speedup_fastest_peer"] is not None:
            ahead = "yes" if r["speedup_fastest_peer"] >= TARGET_SPEEDUP else "**no**"
            if ahead != "yes":
                speed_missed.append(f"{label} ({r['speedup_fastest_peer']:.2f}×)")
        if r["n"] == FLOOR_N and r["limit_fraction"] is not None:
            floor_ok = "yes" if r["limit_fraction"] >= TARGET_FLOOR[r["dtype"]] else "**no**"
            if floor_ok != "yes":
                floor_missed.append(f"{label} ({r['limit_fraction']:.0%})")
                if (r["name"].split("/")[1], r["dtype"]) in FLOOR_NAMED and "/biased/" in r["name"]:
                    named_missed.append(floor_missed[-1])
        lines.append(f"| {r['name']} | {r['n']} | {r['dtype']} | {fmt(r['speedup_fastest_peer'], '.2f')} | "
                     f"{r['fastest_peer'] or '–'} | {fmt(r['limit_fraction'], '.0%')} | {ahead} | {floor_ok} |")
    over = [f"{r['name']} {r['dtype']} n={r['n']} {name} ({fraction:.0%})" for r in report["rows"]
            for name, fraction in [("ours", r.get("limit_fraction")),
                                   *((p, v.get("limit_fraction")) for p, v in (r.get("peers") or {}).items())]
            if fraction is not None and fraction > LIMIT_NOISE]
    off = [f"{r['name']} {r['dtype']} n={r['n']} {name} ({err:.2g})" for r in rows
           for name, err in [("ours", r.get("err_in_scale")), *((p, v.get("err_in_scale")) for p, v in r["peers"].items())]
           if err is not None and err > value_bound(r)]
    at_size = [r for r in rows if r["n"] >= TARGET_MIN_N]
    at_floor = [r for r in rows if r["n"] == FLOOR_N]

    def verdict(checked, missed):
        if not checked:
            return "not measured in this run"
        return "**met**" if not missed else "**missed**: " + "; ".join(missed)
    lines += ["",
              f"* ≥ {TARGET_SPEEDUP}× the fastest peer, every kernel, float32 and float64, n ≥ {TARGET_MIN_N}: "
              + verdict(at_size, speed_missed),
              f"* floor at n = {FLOOR_N}, RBF (float32, float64) and the product kernel (float64): "
              + verdict([r for r in at_floor if (r["name"].split("/")[1], r["dtype"]) in FLOOR_NAMED], named_missed),
              f"* floor at n = {FLOOR_N}, every kernel: " + verdict(at_floor, floor_missed),
              f"* no implementation above {LIMIT_NOISE:.0%} of the limit: " + verdict(report["rows"], over),
              "* every value (ours and the peers') within ((n + m) + 8 (d + 2)) eps sum|terms| of the float64 "
              "reference: " + verdict([r for r in rows if r.get("err_in_scale") is not None], off)]
    mem = report.get("memory")
    if mem and mem.get("measured"):
        not_linear = [f"n={r['n']}" for r in mem["measured"] if not r["linear"]]
        lines.append("* memory linear (ours, 1.5 × inputs + the tile budget): " + verdict(mem["measured"], not_linear))
    return lines
