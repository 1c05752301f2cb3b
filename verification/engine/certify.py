"""The certify driver: ``iclkd verify --certify`` hands each :class:`~verification.core.model.CheckResult` to
:func:`certify_result`, which re-evaluates its ``worst_case`` (or a conjecture's counterexample) in ball
arithmetic through the check's certificate claims (:mod:`verification.oracles.claims`).

``not offered``: the check has no ``certificate_claims`` hook (verification.core.protocol); ``not applicable``:
the hook declines (a probabilistic statement), or nothing was recorded to certify; ``error``: the claims name
a key the recorded worst case lacks (a renamed key fails loudly).

What a certificate proves is stated in its ``claim`` strings; it is a statement about the real numbers
defined by the formulas of docs/statements.md on those exact inputs, never about a float computation,
except where a claim names a recorded float value (the library's output) and bounds its distance to the
exact value. The worst-case keys each statement records are documented in its folder's ``certificate.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from verification.core import protocol
from verification.core.model import Check
from verification.engine.plugins import all_checks
from verification.oracles.claims import PRECISIONS, certify_claims


def _check_class(check: str | type[Check]) -> type[Check] | None:
    if not isinstance(check, str):
        return check
    return all_checks().get(check)


def certify_instance(check: str | type[Check], instance: dict | None, *, kind: str = "theorem",
                     status: str | None = None, precisions=PRECISIONS) -> dict:
    """The certificate of one recorded instance of ``check`` (a check class, or a registered id).

    ``not offered``: the check does not implement the ``certificate_claims`` hook; ``not applicable``: the hook
    declines (a probabilistic statement), or nothing was recorded; ``error``: the recorded instance lacks a
    key the claims name, or the claims cannot be built from it (the message says which); else the decision
    of :func:`~verification.oracles.claims.certify_claims`.
    """
    start = time.perf_counter()
    cls = _check_class(check)
    check_id = check if isinstance(check, str) else check.id
    if cls is None:
        cert = {"status": "error", "reason": f"unknown check id {check_id!r}: no registered check to certify it"}
    elif not protocol.offers(cls, "certificate_claims"):
        cert = {"status": protocol.NOT_OFFERED, "reason": protocol.not_offered(cls, "certificate_claims")}
    elif protocol.declined(cls, "certificate_claims"):
        cert = {"status": "not applicable", "reason": protocol.declined(cls, "certificate_claims")}
    elif not instance:
        if kind == "conjecture" and status != "refuted":
            reason = f"no counterexample to certify (the conjecture {status or 'survived'})"
        else:
            reason = "no worst_case recorded by the check"
        cert = {"status": "not applicable", "reason": reason}
    else:
        try:
            cert = certify_claims(cls.certificate_claims, instance, precisions)
        except protocol.NotApplicable as err:
            cert = {"status": "not applicable", "reason": str(err)}
        except KeyError as err:
            cert = {"status": "error", "reason": f"the claims of {check_id} name a key the worst case lacks: {err}"}
        except (ValueError, TypeError) as err:
            cert = {"status": "error", "reason": f"the recorded instance of {check_id} cannot be certified: "
                                                 f"{type(err).__name__}: {err}"}
        if kind == "conjecture" and cert["status"] == "violation proven":
            cert["reason"] = f"the recorded counterexample is proven NOT to be one ({cert['reason']})"
    cert.setdefault("lhs", "")
    cert.setdefault("rhs", "")
    cert.setdefault("precision_bits", None)
    cert["elapsed_s"] = time.perf_counter() - start
    return cert


def certify_result(result) -> dict:
    """The certificate of a :class:`~verification.core.model.CheckResult` (its ``worst_case``; for a conjecture,
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
