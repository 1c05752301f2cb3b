"""Reports of a verification run: JSON (machine-readable), Markdown and a console table."""

from __future__ import annotations

import dataclasses
import json
import platform
from typing import Any

import jax
import jaxlib
import numpy as np

from verification.core import budget
from verification.core.model import PROFILES, CheckResult
from verification.core.outputs import jsonable
from verification.engine.plugins import all_checks

#: fields that measure time (anywhere in a report, figures included): the only fields that may differ between two
#: runs with the same seed. A check's summary is compared too, so it carries no timings.
TIMING_FIELDS = ("elapsed_s", "total_elapsed_s", "cases_per_second")


def strip_timing(value: Any) -> Any:
    """A report (or any part of one) without its :data:`TIMING_FIELDS`: what the same seed reproduces exactly."""
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def environment() -> dict[str, Any]:
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "x64": bool(jax.config.jax_enable_x64),
            "backend": jax.default_backend()}


def false_alarm_budget(profile: str) -> dict:
    """The run-wide false-alarm budget of ``profile`` and its Bonferroni split (:mod:`verification.core.budget`)."""
    return budget.split(all_checks(), PROFILES[profile])


def budget_line(profile: str) -> str:
    """The budget in one line, for the console."""
    return budget.describe(false_alarm_budget(profile))


def to_json(results: list[CheckResult], *, profile: str, seed: int, extra: dict[str, Any] | None = None) -> dict:
    report = {
        "profile": profile,
        "seed": seed,
        "versions": environment(),
        "checks": [jsonable(dataclasses.asdict(r)) for r in results],
        "false_alarm_budget": jsonable(false_alarm_budget(profile)),
        "total_elapsed_s": sum(r.elapsed_s for r in results),
    }
    if extra:
        report.update(jsonable(extra))
    return report


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if value == 0 or (1e-3 <= abs(value) < 1e4):
        return f"{value:.4g}"
    return f"{value:.2e}"


HEADER = ("id", "kind", "status", "cases", "worst", "measure", "tightness")
#: the extra column of a run with ``--certify`` (verification/engine/certify.py)
CERTIFICATE_HEADER = "certificate"


def certificate_cell(certificate: dict | None) -> str:
    """``proven (64 bits)``, ``not proven (512 bits)``, ``violation proven (64 bits)``, ``not applicable``."""
    if not certificate:
        return "-"
    bits = certificate.get("precision_bits")
    return f"{certificate['status']} ({bits} bits)" if bits else certificate["status"]


def _header(results: list[CheckResult]) -> tuple[str, ...]:
    return HEADER + ((CERTIFICATE_HEADER,) if any(r.certificate for r in results) else ())


def rows(results: list[CheckResult]) -> list[tuple[str, ...]]:
    certified = any(r.certificate for r in results)
    return [(r.id, r.kind, r.status, str(r.cases), _fmt(r.worst), r.worst_label, _fmt(r.tightness))
            + ((certificate_cell(r.certificate),) if certified else ()) for r in results]


def table(results: list[CheckResult]) -> str:
    """A fixed-width console table, one line per check, and each check's summary underneath."""
    body = rows(results)
    header = _header(results)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in body]
    out.append("")
    out += [f"{r.id}: {r.summary}" for r in results if r.summary]
    out += [f"{r.id} certificate: {_certificate_line(r.certificate)}" for r in results if r.certificate]
    return "\n".join(out)


def _certificate_line(certificate: dict) -> str:
    """The certificate's status, headline claim with its enclosures, and the reason."""
    if certificate.get("claim"):
        return (f"{certificate['status']}: {certificate['claim']}: lhs {certificate['lhs']}, rhs {certificate['rhs']} "
                f"({certificate['reason']})")
    return f"{certificate['status']}: {certificate.get('reason', '')}"


def markdown(results: list[CheckResult], *, profile: str, seed: int) -> str:
    env = environment()
    out = [f"# iclkd verify — profile `{profile}`, seed {seed}", "",
           f"jax {env['jax']}, jaxlib {env['jaxlib']}, numpy {env['numpy']}, x64 {env['x64']}", "",
           "| " + " | ".join(_header(results)) + " |", "|" + "---|" * len(_header(results))]
    out += ["| " + " | ".join(row) + " |" for row in rows(results)]
    out.append("")
    for r in results:
        out.append(f"- **{r.id}** ({r.status}): {r.summary}")
        if r.tolerance is not None:
            out.append(f"  tolerance {_fmt(r.tolerance)}: {r.tolerance_reason}")
        if r.counterexample:
            out.append(f"  counterexample: `{json.dumps(jsonable(r.counterexample))}`")
        if r.certificate:
            out.append(f"  certificate: {_certificate_line(r.certificate)}")
    split = false_alarm_budget(profile)
    out += ["", "## False-alarm budget", "", budget.describe(split), "",
            "| check | judgement | count | sides | level | z |", "|---|---|---|---|---|---|"]
    out += [f"| {cid} | {name}: {j['description']} | {j['count']} | {j['sides']} | {j['level']:.3g} | {j['z']:.3f} |"
            for cid, judgements in split["checks"].items() for name, j in judgements.items()]
    return "\n".join(out) + "\n"
