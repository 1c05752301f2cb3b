import numpy as np
import pytest
from _planted import planted

import iclkd_jax as ik
from verification.engine.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("thm-3.1a", profile="smoke", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 1500 and result.figures["cases_per_second"] > 0
    assert result.figures["max_error_float64"] < 1e-12
    assert result.figures["max_error_float32"] < 1e-4
    assert result.figures["max_logit"] > 100          # the log-space paths are exercised
    assert 0 < result.worst <= 1.0
    case = result.worst_case
    assert {"wq", "wk", "wv", "demos", "context", "query", "dtype_bits", "w0_out", "tolerance"} <= set(case)
    assert np.asarray(case["wq"]).shape[1] == len(case["query"])


def _drop_dw(original):
    return lambda *a, **k: original(*a, **k)._replace(dw_out=original(*a, **k).dw_out * 0)


def _attention_keys_for_values(original):
    def attention(weights, tokens, queries):           # keys and values swapped (d_v = d_k needed: pad/trim)
        w = ik.AttentionWeights(weights.wq, weights.wk, weights.wk[:weights.wv.shape[0]]
                                if weights.wk.shape[0] >= weights.wv.shape[0] else weights.wv * 0)
        return original(w, tokens, queries)
    return attention


def _operator_scale_off_by_log2(original):
    def operators(*args):
        w0, dw = original(*args)
        return w0._replace(log_scale=w0.log_scale + np.log(2.0)), dw
    return operators


def _hs_norm_half(original):
    return lambda op: original(op)._replace(log_value=original(op).log_value - np.log(2.0))


@pytest.mark.parametrize("name, make", [
    ("softmax_attention", _attention_keys_for_values),
    pytest.param("kd_decomposition", _drop_dw, marks=pytest.mark.slow),
    pytest.param("attention_operators", _operator_scale_off_by_log2, marks=pytest.mark.slow),
    pytest.param("hs_norm", _hs_norm_half, marks=pytest.mark.slow)])
def test_planted_library_bugs_are_violations(monkeypatch, name, make):
    with planted(monkeypatch, name, make):
        result = run_check("thm-3.1a", profile="smoke", seed=0, shrink=False)
    assert result.status == "violated", (name, result.summary)
    assert result.counterexample is not None
