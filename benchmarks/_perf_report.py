"""The Markdown report of ``iclkd bench perf``."""

from __future__ import annotations


def fmt(v, spec=".3g"):
    return "–" if v is None else format(v, spec)


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
             + f"; read bandwidth {meta['rates']['float32']['read_bytes_per_s'] / 1e9:.1f} GB/s "
             f"(each the highest of {meta.get('rate_measurements', 2)} measurements spread over the run).",
             "",
             "| workload | n | d | dtype | ours (s) | compile (s) | NumPy (s) | ×NumPy | sklearn (s) | ×sklearn | limit |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["rows"]:
        lines.append(f"| {r['name']} | {r['n']} | {fmt(r['d'])} | {r['dtype']} | {fmt(r['ours_s'])} | "
                     f"{fmt(r['compile_s'])} | {fmt(r['numpy_s'])} | {fmt(r['speedup_numpy'])} | "
                     f"{fmt(r['sklearn_s'])} | {fmt(r['speedup_sklearn'])} | {fmt(r['limit_fraction'], '.0%')} |")
    lines += _peer_table(report)
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
