"""Claims ``lhs <= rhs`` between balls (or exact rationals) on one instance, and their decision.

A certifier (a statement's ``certificate_claims`` hook, :mod:`verification.core.protocol`) turns the exact
float64 inputs of one instance into :class:`Claim` s; :func:`certify_claims` decides them at increasing
working precision:

* ``proven``: ``upper(lhs) <= lower(rhs)`` for every claim (for a conjecture: the counterexample is
  proven to be one);
* ``violation proven``: ``lower(lhs) > upper(rhs)`` for some claim: the instance is a certified failure;
* ``not proven``: the balls overlap at every precision tried; the widths that prevented a decision are
  reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from verification.oracles import balls as C
from verification.oracles.balls import arb

#: every status a certificate can have: the decision of the claims, or why there is none (verification.engine.certify)
STATUSES = ("proven", "not proven", "violation proven", "not applicable", "not offered", "error")
#: working precisions tried in turn until every claim is decided
PRECISIONS = (64, 128, 256, 512)





@dataclasses.dataclass
class Claim:
    """``lhs <= rhs`` on one instance. ``lhs``/``rhs`` are balls or exact ``Fraction`` s."""

    name: str
    lhs: Any
    rhs: Any
    #: ``lhs < rhs`` (e.g. ``0 < ||ΔW||``): a ball touching the right side is not a proof
    strict: bool = False
    #: an equivalent (or stronger) claim tried when this one is undecided, e.g. a difference form that is
    #: exactly 0 at an attained equality; this claim is then proven through it
    alternative: Claim | None = None
    #: the claim a proven certificate shows first (else the tightest claim decided on balls)
    headline: bool = False

    @property
    def exact(self) -> bool:
        return isinstance(self.lhs, Fraction) and isinstance(self.rhs, Fraction)

    def status(self) -> str:
        own = self._own_status()
        if own == "not proven" and self.alternative is not None:
            return self.alternative.status()
        return own

    def _own_status(self) -> str:
        if self.exact:
            holds = self.lhs < self.rhs if self.strict else self.lhs <= self.rhs
            return "proven" if holds else "violation proven"
        lhs, rhs = _as_ball(self.lhs), _as_ball(self.rhs)
        if not (lhs.is_finite() and rhs.is_finite()):
            return "not proven"
        if C.proven_lt(lhs, rhs) if self.strict else C.proven_le(lhs, rhs):
            return "proven"
        if C.proven_le(rhs, lhs) if self.strict else C.proven_lt(rhs, lhs):
            return "violation proven"
        return "not proven"

    def describe(self) -> dict:
        lhs, rhs = _as_ball(self.lhs), _as_ball(self.rhs)
        out = {"claim": self.name, "status": self.status(), "lhs": _string(self.lhs), "rhs": _string(self.rhs),
               "exact_rational": self.exact, "headline": self.headline}
        if self.alternative is not None and self._own_status() == "not proven":
            out["via"] = self.alternative.describe()
        if lhs.is_finite() and rhs.is_finite():
            out.update(lhs_radius=C.radius(lhs), rhs_radius=C.radius(rhs),
                       lhs_relative_radius=C.relative_radius(lhs), rhs_relative_radius=C.relative_radius(rhs),
                       # lower(rhs) - upper(lhs): > 0 proven, the gap the balls left
                       margin=float(rhs.lower() - lhs.upper()))
            if rhs > 0:  # the instance's exact ratio lhs / rhs, enclosed
                out["ratio"] = C.to_string(lhs / rhs)
        return out


def _as_ball(x) -> arb:
    if isinstance(x, Fraction):
        return C.as_ball(x)
    return x


def _string(x) -> str:
    if isinstance(x, Fraction):
        if x.denominator == 1 or x == 0:
            return f"{x.numerator} ± 0 (exact)"
        return f"{C.to_string(C.as_ball(x))} (exact rational {x.numerator}/{x.denominator})" \
            if len(str(x.denominator)) < 40 else f"{C.to_string(C.as_ball(x))} (exact rational)"
    return C.to_string(x)


def summarise(claims: Sequence[Claim], precision: int) -> dict:
    """The certificate of a list of claims at one precision (see the module docstring)."""
    described = [c.describe() for c in claims]
    statuses = [d["status"] for d in described]
    if "violation proven" in statuses:
        status = "violation proven"
        key = described[statuses.index("violation proven")]
    elif all(s == "proven" for s in statuses):
        status = "proven"
        # the headline: a claim marked so, else the tightest claim decided on balls (smallest relative margin)
        marked = [d for d in described if d["headline"]]
        candidates = [d for d in described if not d["exact_rational"]] or described
        key = marked[0] if marked else min(
            candidates, key=lambda d: d.get("margin", math.inf) / max(abs(_mid(d["rhs"])), 1e-300))
    else:
        status = "not proven"
        key = described[statuses.index("not proven")]
    attained = [d["claim"] for d in described
                 if d["status"] == "proven" and (d.get("via", d)["lhs"], d.get("via", d)["rhs"]) == ("0 ± 0", "0 ± 0")]
    attained_note = f"; attained with equality, proven exactly for: {'; '.join(attained)}" if attained else ""
    reason = {"proven": f"all {len(claims)} claims proven at {precision} bits{attained_note}",
              "violation proven": f"violated: {key['claim']}",
              "not proven": f"undecided: {key['claim']} (lhs radius {key.get('lhs_radius', math.inf):.2e}, "
                            f"rhs radius {key.get('rhs_radius', math.inf):.2e}, margin {key.get('margin', 0):.2e})"}
    return {"status": status, "claim": key["claim"], "lhs": key["lhs"], "rhs": key["rhs"], "precision_bits": precision,
            "reason": reason[status], "claims": described}


def _mid(text: str) -> float:
    try:
        return float(text.split(" ± ")[0])
    except ValueError:
        return 1.0


def certify_claims(build: Callable[[dict], list[Claim]], worst_case: dict, precisions=PRECISIONS) -> dict:
    """Builds and decides the claims at each precision in turn until none is undecided."""
    cert = None
    tried = []
    for bits in precisions:
        try:
            with C.working_precision(bits):
                cert = summarise(build(worst_case), bits)
        except ZeroDivisionError as err:
            cert = {"status": "not proven", "reason": f"{type(err).__name__} at {bits} bits: {err}",
                    "precision_bits": bits, "lhs": "", "rhs": "", "claims": []}
        except ValueError as err:  # e.g. eigenvalues not isolated at this precision
            if "enclosure failed" not in str(err):
                raise
            cert = {"status": "not proven", "reason": str(err), "precision_bits": bits, "lhs": "", "rhs": "",
                    "claims": []}
        tried.append(bits)
        if cert["status"] != "not proven":
            break
    cert["precisions_tried"] = tried
    return cert
