"""anetrain.load(...).eval(...) on the shared Hugging Face fixture against transformers' loss."""

import json
from pathlib import Path

import numpy as np
import pytest

import anetrain

FIXTURE = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "llama_mha"

pytestmark = pytest.mark.skipif(
    not (FIXTURE / "meta.json").exists(), reason=f"{FIXTURE} is absent (no shared fixtures here)"
)


@pytest.fixture(scope="module")
def fixture():
    meta = json.loads((FIXTURE / "meta.json").read_text())
    tokens = np.fromfile(FIXTURE / "tokens.bin", dtype="<u4").reshape(meta["batch"], meta["seq"] + 1)
    return meta, tokens, anetrain.load(FIXTURE)


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_loss_matches_transformers(fixture, device):
    meta, tokens, model = fixture
    loss = model.eval(tokens, device=device)
    assert isinstance(loss, float)
    assert loss == pytest.approx(meta["loss"], rel=1e-4)


def test_config_is_a_dict_of_the_fixture(fixture):
    meta, _, model = fixture
    assert model.config["hidden_size"] == meta["dim"]
    assert model.config["num_hidden_layers"] == meta["n_layers"]
    assert model.config["vocab_size"] == meta["vocab"]


def test_any_integer_dtype_and_python_lists(fixture):
    meta, tokens, model = fixture
    assert model.eval(tokens.astype(np.int64), device="reference") == pytest.approx(meta["loss"], rel=1e-4)
    assert model.eval(tokens.tolist(), device="reference") == pytest.approx(meta["loss"], rel=1e-4)


def test_bad_tokens_and_paths_raise_with_the_message(fixture, tmp_path):
    _, tokens, model = fixture
    with pytest.raises(ValueError, match="integer array"):
        model.eval(tokens.astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        model.eval(tokens[0])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        model.eval(tokens[:, :1])
    with pytest.raises(ValueError, match="non-negative"):
        model.eval(tokens.astype(np.int64) - 1000)
    bad = tokens.copy()
    bad[0, 3] = 100000
    with pytest.raises(anetrain.AnetrainError, match="100000"):
        model.eval(bad, device="reference")
    with pytest.raises(ValueError, match="unknown device `gpu`"):
        model.eval(tokens, device="gpu")
    with pytest.raises(anetrain.AnetrainError, match="does not exist"):
        anetrain.load(tmp_path / "missing")
