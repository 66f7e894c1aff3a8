"""LoRA through the package: the Trainer's LoRA keywords train an adapter on a saved base (the
loss falls), its checkpoint holds only the adapter, ``adapter=`` continues it, and a bad LoRA
setting is an error naming it."""

import json
from pathlib import Path

import pytest

import anetrain

DATA = "synthetic:20000"
BASE_OPTIONS = dict(steps=3, batch=4, seq=32, lr=3e-3, warmup=0, seed=1, device="cpu")
LORA = dict(lora_rank=4, lora_alpha=8, lora_targets="q_proj,v_proj,down_proj", lora_layers=2)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    trainer = anetrain.Trainer("tiny", data=DATA, **BASE_OPTIONS)
    trainer.train(3)
    return Path(trainer.save(tmp_path_factory.mktemp("base") / "run"))


@pytest.fixture(scope="module")
def lora_run(base, tmp_path_factory):
    trainer = anetrain.Trainer(
        str(base), data=DATA, steps=30, batch=4, seq=32, lr=3e-2, warmup=0, seed=2, device="cpu", **LORA
    )
    metrics = trainer.train(30)
    val = trainer.evaluate()["loss"]
    checkpoint = Path(trainer.save(tmp_path_factory.mktemp("lora") / "run"))
    return metrics, checkpoint, val


def test_a_lora_run_lowers_the_loss(lora_run):
    metrics, _, _ = lora_run
    assert len(metrics) == 30
    assert metrics[-1]["loss"] < metrics[0]["loss"] - 0.05


def test_the_lora_checkpoint_holds_only_the_adapter(base, lora_run):
    _, checkpoint, _ = lora_run
    assert not (checkpoint / "model.safetensors").exists()
    config = json.loads((checkpoint / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == ["down_proj", "q_proj", "v_proj"]
    adapter = (checkpoint / "adapter_model.safetensors").stat().st_size
    assert adapter * 10 < (base / "model.safetensors").stat().st_size


def test_adapter_continues_the_saved_adapter(base, lora_run):
    _, checkpoint, val = lora_run
    again = anetrain.Trainer(str(base), data=DATA, steps=5, batch=4, seq=32, seed=2, device="cpu", adapter=str(checkpoint))
    assert again.evaluate()["loss"] == pytest.approx(val, rel=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(lora_rank=0), "rank is 0"),
        (dict(lora_targets=["q_proj", "qq_proj"]), "qq_proj"),
        (dict(lora_layers=5), "--lora-layers 5"),
    ],
)
def test_a_bad_lora_setting_is_named(base, bad, message):
    with pytest.raises(anetrain.AnetrainError, match=message):
        anetrain.Trainer(str(base), data=DATA, steps=1, device="cpu", **bad)


def test_lora_needs_the_base_as_a_path():
    with pytest.raises(anetrain.AnetrainError, match="base's path as the model"):
        anetrain.Trainer("tiny", data=DATA, steps=1, device="cpu", lora_rank=4)
