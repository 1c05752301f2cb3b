"""The certify driver: ``iclkd verify --certify`` hands each :class:`~verification.core.model.CheckResult` to
:func:`certify_result`, which re-evaluates its ``worst_case`` (or a conjecture's counterexample) in ball
arithmetic through the check's certificate claims (:mod:`verification.oracles.claims`).

``not applicable``: a probabilistic statement, or nothing was recorded to certify.

What a certificate proves is stated in its ``claim`` strings; it is a statement about the real numbers
defined by the formulas of docs/statements.md on those exact inputs, never about a float computation,
except where a claim names a recorded float value (the library's output) and bounds its distance to the
exact value. The worst-case keys each statement records are documented in its folder's ``certificate.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from verification.oracles.claims import PRECISIONS, certify_claims
from verification.statements import certificates as claims

NOT_APPLICABLE = {
    "thm-3.2": "probabilistic (a bound that holds with probability >= 1 - delta over the draw): judged by a "
               "binomial confidence interval over draws, not by one instance",
    "conj-3.2": "a rate conjecture judged statistically over many draws; no single instance decides it",
    "lemma-features": "random-feature rates and variances are statistical statements (confidence intervals)",
}


CERTIFIERS: dict[str, Callable[[dict], list]] = {
    "thm-3.1a": claims.thm_3_1a_claims,
    "thm-3.1b": claims.thm_3_1b_claims,
    "thm-linear": claims.thm_linear_claims,
    "lemma-eta": claims.lemma_eta_claims,
    "thm-4.1": claims.thm_4_1_claims,
    "thm-4.2": claims.thm_4_2_claims,
    "conj-4.1": claims.conj_4_1_claims,
}


def certify_instance(check_id: str, instance: dict | None, *, kind: str = "theorem", status: str | None = None,
                     precisions=PRECISIONS) -> dict:
    """The certificate of one recorded instance of ``check_id`` (see the module docstring)."""
    start = time.perf_counter()
    if check_id in NOT_APPLICABLE:
        cert = {"status": "not applicable", "reason": NOT_APPLICABLE[check_id]}
    elif check_id not in CERTIFIERS:
        cert = {"status": "not applicable", "reason": f"no certifier for {check_id} (not a deterministic statement "
                                                      "covered by verification/certificates.py)"}
    elif not instance:
        if kind == "conjecture" and status != "refuted":
            reason = f"no counterexample to certify (the conjecture {status or 'survived'})"
        else:
            reason = "no worst_case recorded by the check"
        cert = {"status": "not applicable", "reason": reason}
    else:
        try:
            cert = certify_claims(CERTIFIERS[check_id], instance, precisions)
        except (KeyError, ValueError) as err:
            cert = {"status": "not applicable", "reason": f"the recorded instance cannot be certified: {err}"}
        if kind == "conjecture" and cert["status"] == "violation proven":
            cert["reason"] = f"the recorded counterexample is proven NOT to be one ({cert['reason']})"
    cert.setdefault("lhs", "")
    cert.setdefault("rhs", "")
    cert.setdefault("precision_bits", None)
    cert["elapsed_s"] = time.perf_counter() - start
    return cert


def certify_result(result) -> dict:
    """The certificate of a :class:`~verification.registry.CheckResult` (its ``worst_case``; for a conjecture,
    the counterexample it recorded there)."""
    return certify_instance(result.id, result.worst_case, kind=result.kind, status=result.status)


def certify_results(results: Sequence) -> float:
    """Fills ``certificate`` of every result in place; returns the seconds spent."""
    start = time.perf_counter()
    for r in results:
        r.certificate = certify_result(r)
    return time.perf_counter() - start


def certify_report(report: dict) -> dict:
    """Adds a ``certificate`` to every check of a JSON report of ``iclkd verify`` (in place) and returns it."""
    start = time.perf_counter()
    for check in report.get("checks", []):
        check["certificate"] = certify_instance(check["id"], check.get("worst_case"), kind=check.get("kind", "theorem"),
                                                status=check.get("status"))
    report["certify_elapsed_s"] = time.perf_counter() - start
    return report
