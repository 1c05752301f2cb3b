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
    mem = report.get("memory")
    if mem:
        lines += ["", f"Memory of the default MMD^2 call (d = {mem['d']}, float32, "
                      f"tiles of {mem['block_size']} rows): " + ", ".join(
            f"n = m = {r['n']}: peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB" for r in mem["measured"])
            + (f"; process baseline (JAX imported, nothing computed) {mem['baseline_rss_bytes'] / 2**20:.0f} MiB"
               if mem.get("baseline_rss_bytes") else "") + "."]
        if mem.get("peak_rss_at_target_bytes") is not None:
            lines.append(f"At n = m = {mem['target_n']}: {mem['peak_rss_at_target_bytes'] / 2**20:.0f} MiB "
                         f"({mem['peak_rss_at_target_how']}).")
        if mem.get("xla_at_target"):
            x = mem["xla_at_target"]
            lines.append(f"XLA's buffer plan compiled at n = m = {mem['target_n']}: arguments "
                         f"{x['argument_size_in_bytes'] / 2**20:.0f} MiB, temporaries {x['temp_size_in_bytes'] / 2**20:.1f} MiB.")
    return "\n".join(lines) + "\n"
