"""Certificates (verification/engine/certify.py, each statement's certificate.py): proven on true instances, a proven
violation on planted bugs.

Instances are built here in NumPy (the checks' worst-case recorders are exercised by the
CLI test): a random and an attained instance per bound, library outputs computed in
float64 NumPy (standing in for the library), and single planted errors (a dropped term,
a missing factor 2) that must give ``violation proven``, never ``not proven``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

C = pytest.importorskip("verification.oracles.balls")
from flint import arb

from verification import cli
from verification.core.model import Check
from verification.engine import certify as E
from verification.oracles import claims as CL
from verification.oracles.instances import ShiftBalls
from verification.statements.thm_4_1 import certificate as certificate_41


def L(a):
    return np.asarray(a, np.float64).tolist()


# ---------------------------------------------------------------- instances


def attention_instance(seed=0, n=6, m=3, q=2, d=4, dk=3, dv=2, scale=3.0):
    rng = np.random.default_rng(seed)
    wq, wk = (rng.normal(size=(dk, d)) * scale / math.sqrt(d) for _ in range(2))
    wv = rng.normal(size=(dv, d))
    demos, context, queries = rng.normal(size=(n, d)), rng.normal(size=(m, d)), rng.normal(size=(q, d))
    tokens = np.concatenate([demos, context])
    logits = (queries @ wq.T) @ (tokens @ wk.T).T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    values = tokens @ wv.T
    return {"wq": L(wq), "wk": L(wk), "wv": L(wv), "demos": L(demos), "context": L(context), "queries": L(queries),
            "w0_out": L(p[:, :n] @ values[:n]), "dw_out": L(p[:, n:] @ values[n:])}


def shift_instance(seed=0, attained=False, d=4, dk=2, dv=4, n=3, m=5, log_eta=0.3):
    rng = np.random.default_rng(seed)
    wk = rng.normal(size=(dk, d)) * 0.8
    if attained:  # a scaled isometry: W^V^T W^V = s^2 I up to the rounding of the QR factor
        q, _ = np.linalg.qr(rng.normal(size=(dv, d)))
        wv = 1.7 * q
    else:
        wv = rng.normal(size=(dv, d))
    target, prompt = rng.normal(size=(m, d)), rng.normal(size=(n, d)) + 0.5
    return {"wk": L(wk), "wv": L(wv), "target": L(target), "prompt": L(prompt), "log_eta": log_eta}


def attained_4_2_instance(rows=4, kappa2=2.0, rho=0.2, value_scale=1.3, seed=5):
    """docs/statements.md#thm-4-2: the attained configuration: W^K = [A, 0], W^V = [0, s O], 𝒟 = {(a, 0)}, 𝒬 = {(a, -rho u)}."""
    rng = np.random.default_rng(seed)
    a_mat, a_vec, u = rng.normal(size=(2, 2)), rng.normal(size=2), rng.normal(size=2)
    a_vec, u = a_vec / np.linalg.norm(a_vec), u / np.linalg.norm(u)
    a_mat *= math.sqrt(kappa2) / np.linalg.norm(a_mat @ a_vec)
    o_mat, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    zeros = np.zeros((2, 2))
    rep = lambda row: np.tile(row, (rows, 1))
    query = rep(np.concatenate([a_vec, u]))
    return {"wk": L(np.hstack([a_mat, zeros])), "wv": L(np.hstack([zeros, value_scale * o_mat])),
            "target": L(rep(np.concatenate([a_vec, [0.0, 0.0]]))), "prompt": L(rep(np.concatenate([a_vec, -rho * u]))),
            "queries": L(query[:1]), "reference": L(query), "log_eta": -kappa2 - math.log(2.0)}


# ---------------------------------------------------------------- Theorem 4.1 and the planted constant


@pytest.mark.parametrize("attained", [False, True])
def test_thm_4_1_proven(attained):
    wc = shift_instance(attained=attained)
    cert = E.certify_instance("thm-4.1", wc)
    assert cert["status"] == "proven", cert["reason"]
    main = cert["claims"][0]
    assert main["margin"] >= 0 or main["via"]["status"] == "proven"
    json.dumps(cert)  # JSON-serialisable as is


def _without_the_2(wc):
    return CL.certify_claims(lambda w: certificate_41.claims(w, rhs=lambda s: s.bound / 2), wc)


def test_dropping_the_constant_2_is_a_proven_violation():
    """The bound ``eta ||W^V||_op MMD_k`` (the 2 dropped) at the attained worst case: a certificate of
    violation, not 'not proven'."""
    wc = shift_instance(attained=True, seed=1)
    assert _exact_ratio(wc) > 0.5  # the instance is one where the planted bug shows (ratio > 1/2)
    cert = _without_the_2(wc)
    assert cert["status"] == "violation proven", cert["reason"]
    assert cert["precision_bits"] == 64


def test_the_mutated_bound_is_still_proven_where_it_holds():
    """Honest both ways: where the exact ratio is below 1/2 the halved bound still holds and is proven."""
    wc = shift_instance(attained=False, seed=1)
    assert _exact_ratio(wc) < 0.5
    assert _without_the_2(wc)["status"] == "proven"


def _exact_ratio(wc) -> float:
    with C.working_precision(128):
        s = ShiftBalls(wc)
        return float((s.dw / s.bound).mid())


def test_attained_4_1_ratio_is_within_round_off_of_1():
    wc = shift_instance(attained=True, seed=2)
    assert abs(_exact_ratio(wc) - 1.0) < 1e-14


# ---------------------------------------------------------------- Theorem 4.2


def test_thm_4_2_attained_equality_is_proven_exactly():
    cert = E.certify_instance("thm-4.2", attained_4_2_instance())
    assert cert["status"] == "proven", cert["reason"]
    # the prediction bound is an equality there: proven through a Cauchy-Schwarz gap that is exactly 0
    cauchy = cert["claims"][0]
    assert cauchy["status"] == "proven" and cauchy["via"]["rhs"] == "0 ± 0"
    # and Theorem 4.1's inequality too (W^V^T W^V an exact multiple of I on the value block)
    assert cert["claims"][1]["via"]["rhs"] == "0 ± 0"


def test_thm_4_2_general():
    wc = shift_instance(seed=3)
    rng = np.random.default_rng(3)
    wc.update(queries=L(rng.normal(size=(2, 4))), reference=wc["target"])
    cert = E.certify_instance("thm-4.2", wc)
    assert cert["status"] == "proven" and len(cert["claims"]) == 2 * 2 + 2


def test_thm_4_2_without_the_feature_norm_is_a_proven_violation():
    """The mutant 'no-feature-norm' of thm-4.2 at its attained worst case: ``||ΔW phi|| <= 2 eta ||W^V|| MMD``."""
    wc = attained_4_2_instance(kappa2=2.0)
    with C.working_precision(64):
        s = ShiftBalls(wc)
        z = C.matvec(s.wk, C.ball_vector(wc["queries"][0]))
        prediction_shift = C.norm(C.apply_operator(s.coef, s.values, s.keys, 2 * s.eta, z))
        assert CL.Claim("mutant: no feature norm", prediction_shift, s.bound).status() == "violation proven"
        assert CL.Claim("the bound", prediction_shift, s.bound * C.feature_norm(z),
                       alternative=None).status() in ("proven", "not proven")  # an equality: see the test above


# ---------------------------------------------------------------- Theorem 3.1 and the linear case


@pytest.mark.parametrize("check_id", ["thm-3.1a", "thm-3.1b"])
def test_attention_identities_proven_and_library_checked(check_id):
    wc = attention_instance()
    cert = E.certify_instance(check_id, wc)
    assert cert["status"] == "proven", cert["reason"]
    assert any("library" in c["claim"] for c in cert["claims"])
    # a planted bug in the recorded library output (the query context's term dropped)
    broken = dict(wc, dw_out=L(np.zeros_like(np.asarray(wc["dw_out"]))))
    assert E.certify_instance(check_id, broken)["status"] == "violation proven"


def test_attention_without_library_outputs_certifies_the_identity_only():
    wc = {k: v for k, v in attention_instance(seed=4, m=0).items() if not k.endswith("_out")}
    cert = E.certify_instance("thm-3.1a", wc)
    assert cert["status"] == "proven" and len(cert["claims"]) == 1


def _linear_instance(seed=0):
    rng = np.random.default_rng(seed)
    wq, wk, wv = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    demos, context, queries = rng.normal(size=(5, 4)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    tokens = np.concatenate([demos, context])
    out = ((queries @ wq.T) @ (tokens @ wk.T).T) @ (tokens @ wv.T)
    xs, ys, xq, w = rng.normal(size=(6, 3)), rng.normal(size=(6, 2)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    lr = 0.3
    w1 = w - lr / 6 * (xs @ w.T - ys).T @ xs
    return {"wq": L(wq), "wk": L(wk), "wv": L(wv), "demos": L(demos), "context": L(context), "queries": L(queries),
            "attention_out": L(out), "dual_out": L(out), "xs": L(xs), "ys": L(ys), "xq": L(xq), "w_init": L(w),
            "learning_rate": lr, "prediction": L(xq @ w1.T), "gd": L(xq @ w1.T)}


def test_thm_linear_exact_rational():
    wc = _linear_instance()
    cert = E.certify_instance("thm-linear", wc)
    assert cert["status"] == "proven"
    assert all(c["exact_rational"] for c in cert["claims"])
    assert cert["claims"][0]["lhs"] == "0 ± 0 (exact)"
    twice = dict(wc, prediction=L(2 * np.asarray(wc["prediction"])))  # a step size off by 2 shows as a wrong prediction
    bad = E.certify_instance("thm-linear", twice)
    assert bad["status"] == "violation proven" and "prediction" in bad["claim"]


# ---------------------------------------------------------------- the learning-rate lemma


def test_lemma_eta_proven_and_missing_half():
    logits = np.array([[1000.0, 999.0, 400.0, -3.0, 998.5], [-800.0, -801.0, -802.0, -800.5, -1000.0]])
    n, m = 3, 2
    top = logits.max(axis=1)
    log_d = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    p = np.exp(logits - log_d[:, None])
    wc = {"logits": L(logits), "n_demos": n, "n_context": m, "log_partition": L(log_d),
          "log_eta": L(math.log(n / 2) - log_d), "log_eta_context": L(math.log(m / 2) - log_d),
          "entropy": L(-(p * (logits - log_d[:, None])).sum(axis=1))}
    assert E.certify_instance("lemma-eta", wc)["status"] == "proven"
    bad = dict(wc, log_eta=L(math.log(n) - log_d))  # eta = N/D': the 1/2 dropped
    assert E.certify_instance("lemma-eta", bad)["status"] == "violation proven"
    no_context = dict(wc, n_context=0, log_eta_context=["-inf", "-inf"])  # as written by the JSON report
    assert E.certify_instance("lemma-eta", no_context)["status"] in ("proven", "violation proven")


# ---------------------------------------------------------------- Conjecture 4.1'


def test_conj_4_1_linear_counterexample_is_exact():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3))
    wc = {"kernel": "linear", "wk": L(rng.normal(size=(2, 3))), "wv": L(rng.normal(size=(2, 3))),
          "target": L(np.concatenate([a, -a])), "prompt": L(np.concatenate([2 * a, -2 * a]))}
    cert = E.certify_instance("conj-4.1", wc, kind="conjecture")
    assert cert["status"] == "proven"
    assert any(c["exact_rational"] and "= 0 exactly" in c["claim"] for c in cert["claims"])


def test_conj_4_1_threshold_counterexample_and_false_one():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(4, 2))
    mean = target.mean(axis=0)
    prompt = mean + 2.0 * (target - mean)  # equal means up to rounding: exact MMD^2 tiny but not 0
    wc = {"kernel": "linear", "wk": L(rng.normal(size=(2, 2))), "wv": L(rng.normal(size=(2, 2))),
          "target": L(target), "prompt": L(prompt)}
    cert = E.certify_instance("conj-4.1", wc, kind="conjecture")
    assert cert["status"] == "proven" and "threshold" in cert["claim"]
    # not a counterexample (a plain shift: MMD of the normalised linear kernel is large): a proven violation
    far = dict(wc, prompt=L(target + 3.0), kernel="rbf-1x", bandwidth=1.0)
    assert E.certify_instance("conj-4.1", far, kind="conjecture")["status"] == "violation proven"


# ---------------------------------------------------------------- dispatch, escalation


def test_not_applicable_and_missing_instances():
    assert E.certify_instance("thm-3.2", {"x": 1.0})["status"] == "not applicable"
    assert E.certify_instance("thm-4.1", None)["status"] == "not applicable"
    assert "survive" in E.certify_instance("conj-4.1", None, kind="conjecture", status="survives")["reason"]
    assert "no worst_case" in E.certify_instance("conj-4.1", None, kind="conjecture", status="refuted")["reason"]
    assert "probabilistic" in E.certify_instance("thm-3.2", None)["reason"]


def test_a_claim_naming_a_missing_key_is_an_error_not_a_silent_skip():
    cert = E.certify_instance("thm-4.1", {"wk": [[1.0]]})
    assert cert["status"] == "error" and "lacks" in cert["reason"] and "'wv'" in cert["reason"]


def test_a_check_without_certificate_claims_is_reported_not_offered():
    class Uncertified(Check):
        id, kind, title = "uncertified-demo", "theorem", "no certificate hook"

    cert = E.certify_instance(Uncertified, {"x": 1.0})
    assert cert["status"] == "not offered" and "certificate_claims" in cert["reason"]


def test_precision_escalates_until_decided():
    def build(_):
        third = arb(1) / 3
        return [CL.Claim("3 (1/3) <= 1 + 1e-30", 3 * third, 1 + arb(10) ** -30)]

    cert = CL.certify_claims(build, {})
    assert cert["status"] == "proven" and cert["precisions_tried"] == [64, 128]


def test_undecidable_equality_stays_not_proven():
    def build(_):
        return [CL.Claim("exp(1) <= exp(1)", arb(1).exp(), arb(1).exp())]

    cert = CL.certify_claims(build, {})
    assert cert["status"] == "not proven" and cert["precisions_tried"] == list(CL.PRECISIONS)
    assert "radius" in cert["reason"]


def test_single_query_token_and_float32_cases():
    """checks3's worst_case form: one ``query (d,)`` and ``dtype_bits``; float32 inputs are exact in float64."""
    wc = {k: v for k, v in attention_instance(seed=6, q=1).items() if not k.endswith("_out")}
    wc = {k: L(np.asarray(v, np.float32)) for k, v in wc.items()}
    wc["query"] = wc.pop("queries")[0]
    wc["dtype_bits"] = 32
    cert = E.certify_instance("thm-3.1a", wc)
    assert cert["status"] == "proven"
    assert float(cert["rhs"].split(" ± ")[0]) >= 64 * float(np.finfo(np.float32).eps)  # float32's tolerance


def test_report_certificate_column_and_json():
    from verification.core.model import CheckResult
    from verification.io import report

    plain = CheckResult(id="thm-4.1", kind="theorem", status="holds", cases=3, worst=0.5, worst_label="ratio",
                        worst_case=shift_instance())
    assert "certificate" not in report.table([plain])  # no column without --certify
    certified = CheckResult(**{**plain.__dict__, "certificate": E.certify_result(plain)})
    table = report.table([certified])
    assert table.splitlines()[0].split()[-1] == "certificate" and "proven (64 bits)" in table
    md = report.markdown([certified], profile="quick", seed=0)
    assert "| certificate |" in md and "certificate: proven" in md
    data = json.loads(json.dumps(report.to_json([certified], profile="quick", seed=0)))
    cert = data["checks"][0]["certificate"]
    assert cert["status"] == "proven" and cert["precision_bits"] == 64 and " ± " in cert["lhs"]


def test_lemma_eta_sharp_entropy_bound():
    gaps = [1.0, 5.0, 50.0, 800.0]
    rows = [[-500.0 + g, -500.0, -500.0 - 3.0, -501.0] for g in gaps]
    cert = E.certify_instance("lemma-eta", {"logits": rows, "n_demos": 3, "n_context": 1})
    assert cert["status"] == "proven" and len(cert["claims"]) == len(gaps)
    # a bound one factor e^-g too small is a proven violation at a moderate gap
    with C.working_precision(64):
        lb = [C.ball(v) for v in rows[1]]
        assert CL.Claim("mutant", C.entropy(lb), 3 * (1 + arb(5)) * arb(-10).exp()).status() == "violation proven"


def test_certify_an_existing_json_report(tmp_path, capsys):
    report = {"checks": [{"id": "thm-4.1", "kind": "theorem", "worst_case": shift_instance()},
                         {"id": "thm-3.2", "kind": "theorem", "worst_case": None},
                         {"id": "conj-4.1", "kind": "conjecture", "worst_case": None}]}
    path, out = tmp_path / "r.json", tmp_path / "c.json"
    path.write_text(json.dumps(report))
    assert cli.main(["certify", str(path), "--output", str(out)]) == 0
    certified = json.loads(out.read_text())
    assert [c["certificate"]["status"] for c in certified["checks"]] == ["proven", "not applicable", "not applicable"]
    assert "thm-4.1" in capsys.readouterr().out
    assert cli.main(["certify", str(tmp_path / "missing.json")]) == 2


def _fake_results(*_, **__):
    from verification.core.model import CheckResult

    yield CheckResult(id="thm-4.1", kind="theorem", status="holds", cases=1, worst=0.6, worst_label="ratio",
                      worst_case=shift_instance(attained=True))
    yield CheckResult(id="thm-3.2", kind="theorem", status="holds", cases=1, worst=0.1, worst_label="ratio")


def test_cli_certify_adds_certificates(tmp_path, monkeypatch, capsys):
    from verification import cli
    from verification.engine import runner

    monkeypatch.setattr(runner, "iter_checks", _fake_results)
    path, md = tmp_path / "r.json", tmp_path / "r.md"
    status = cli.main(["verify", "--only", "thm-4.1", "--no-progress", "--certify", "--json", str(path),
                       "--markdown", str(md)])
    assert status == 0
    out = capsys.readouterr()
    assert "certificate" in out.out.splitlines()[0] and "proven (64 bits)" in out.out
    assert "certificates:" in out.err
    checks = json.loads(path.read_text())["checks"]
    assert checks[0]["certificate"]["status"] == "proven" and checks[1]["certificate"]["status"] == "not applicable"
    assert "| certificate |" in md.read_text()


def test_cli_certify_without_python_flint_stops_before_running(monkeypatch, capsys):
    import sys

    from verification import cli
    from verification.engine import runner

    def must_not_run(*_, **__):
        raise AssertionError("a check ran although --certify cannot work")

    monkeypatch.setattr(runner, "iter_checks", must_not_run)
    monkeypatch.setitem(sys.modules, "flint", None)  # `import flint` now raises ImportError
    assert cli.main(["verify", "--profile", "smoke", "--certify"]) == 2
    assert "pip install 'iclkd-jax[certify]'" in capsys.readouterr().err


def test_cli_certify_is_not_part_of_the_self_test(capsys):
    from verification import cli

    assert cli.main(["verify", "--self-test", "--certify"]) == 2
    assert "--certify" in capsys.readouterr().err


def test_thm_3_1b_checks_the_recorded_step_size():
    wc = attention_instance(seed=8, q=1)
    demos, context = np.asarray(wc["demos"]), np.asarray(wc["context"])
    logits = np.concatenate([demos, context]) @ np.asarray(wc["wk"]).T @ (np.asarray(wc["wq"]) @ wc["queries"][0])
    log_d = logits.max() + math.log(np.exp(logits - logits.max()).sum())
    good = dict(wc, log_eta=math.log(len(demos) / 2) - log_d)
    cert = E.certify_instance("thm-3.1b", good)
    assert cert["status"] == "proven" and any("log eta" in c["claim"] for c in cert["claims"])
    doubled = dict(good, log_eta=good["log_eta"] + math.log(2))  # eta off by 2
    assert E.certify_instance("thm-3.1b", doubled)["status"] == "violation proven"
