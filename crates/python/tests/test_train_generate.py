"""The model journeys through the package: train a tiny preset with a metrics callback, save,
reload, generate (whole and streamed) against the reference model's logits and the CLI binary,
export to Hugging Face and back, and Ctrl-C during a long train."""

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import anetrain

DATA = "synthetic:20000"
OPTIONS = dict(steps=200, batch=4, seq=32, lr=3e-3, warmup=0, seed=1, device="cpu", eval_batches=4)
BOS, EOS = 256, 257  # the byte tokenizer's
STOP_AFTER = 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("train") / "run"
    trainer = anetrain.Trainer("tiny", data=DATA, out=run, **OPTIONS)
    seen = []

    def callback(metrics):
        seen.append(metrics)
        return len(seen) == STOP_AFTER  # True stops

    taken = trainer.train(20, callback=callback)
    checkpoint = trainer.save()
    return trainer, run, checkpoint, seen, taken


@pytest.fixture(scope="module")
def model(trained):
    return anetrain.load(trained[1])


def test_the_callback_sees_the_loss_fall_and_stops_the_loop(trained):
    trainer, _, _, seen, taken = trained
    assert [m["step"] for m in seen] == list(range(1, STOP_AFTER + 1))
    assert taken == seen
    assert seen[-1]["loss"] < seen[0]["loss"] - 0.2
    assert trainer.current_step == STOP_AFTER
    assert trainer.options["batch"] == 4


def test_the_saved_checkpoint_reloads_with_the_trainers_validation_loss(trained, model):
    trainer, run, checkpoint, _, _ = trained
    assert Path(checkpoint).parent == run
    again = anetrain.Trainer(model, data=DATA, **OPTIONS)
    assert again.current_step == 0
    assert again.evaluate()["loss"] == pytest.approx(trainer.evaluate()["loss"], rel=1e-6)
    with pytest.raises(anetrain.AnetrainError, match="already holds a run"):
        again.save(run)


def greedy_by_reference(model, prompt_ids, n):
    """Greedy continuation from the reference model's logits, recomputed from scratch for each
    token (no KV cache), ending at EOS."""
    ids = list(prompt_ids)
    out = []
    for _ in range(n):
        token = int(np.argmax(model.logits(ids)[-1]))
        if token == EOS:
            break
        out.append(token)
        ids.append(token)
    return out


def byte_text(ids):
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def test_greedy_generation_follows_the_reference_logits(model):
    text = model.generate("Once", max_new_tokens=8, device="cpu")
    expected = greedy_by_reference(model, [BOS, *b"Once"], 8)
    assert text == byte_text(expected)
    assert model.generate([BOS, *b"Once"], max_new_tokens=8, device="cpu") == text


def test_streamed_pieces_join_to_the_whole_text(model):
    stream = model.generate("Once", max_new_tokens=8, device="cpu", stream=True)
    assert isinstance(stream, anetrain.Stream)
    pieces = list(stream)
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == model.generate("Once", max_new_tokens=8, device="cpu")
    # Leaving a stream early stops its generation.
    first = next(iter(model.generate("Once", max_new_tokens=50, device="cpu", stream=True)))
    assert first == pieces[0]


def anetrain_binary():
    given = os.environ.get("ANETRAIN_BIN")
    if given:
        return Path(given)
    target = os.environ.get("CARGO_TARGET_DIR", Path(__file__).resolve().parents[3] / "target")
    return Path(target) / "debug" / "anetrain"


def test_greedy_generation_equals_the_cli(trained, model):
    binary = anetrain_binary()
    if not binary.exists():
        pytest.skip(f"{binary} is absent: build it with `cargo build -p anetrain` or set ANETRAIN_BIN")
    cli = subprocess.run(
        [binary, "generate", "--model", trained[1], "--prompt", "Once", "--max-tokens", "12",
         "--temperature", "0", "--device", "cpu"],
        capture_output=True, text=True, check=True,
    )
    assert cli.stdout == "Once" + model.generate("Once", max_new_tokens=12, device="cpu") + "\n"


def test_sampling_is_seeded(model):
    a = model.generate("Once", max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7, device="cpu")
    b = model.generate("Once", max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7, device="cpu")
    assert a == b


def test_export_to_hugging_face_reads_back_the_same_model(model, tmp_path):
    out = tmp_path / "hf"
    model.export(out, format="hf")
    back = anetrain.load(out)
    assert back.config == model.config
    rows = np.array([[BOS, *b"Once upon a time"]], dtype=np.int64)
    assert back.eval(rows, device="reference") == model.eval(rows, device="reference")
    with pytest.raises(anetrain.AnetrainError, match="already holds a model.safetensors"):
        model.export(out)
    with pytest.raises(ValueError, match="choose hf, llama2c, peft or mlx"):
        model.export(tmp_path / "x", format="onnx")


def test_ctrl_c_interrupts_train_after_a_step_and_leaves_it_usable():
    trainer = anetrain.Trainer("tiny", data=DATA, steps=100000, batch=2, seq=16, device="cpu")
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.train(100000)
    finally:
        timer.cancel()
    done = trainer.current_step
    assert 0 < done < 100000
    assert trainer.step()["step"] == done + 1


def test_bad_settings_and_requests_raise_with_the_message(model, tmp_path):
    with pytest.raises(ValueError, match="stpes"):
        anetrain.Trainer("tiny", data=DATA, stpes=3)
    with pytest.raises(ValueError, match="unknown device `gpu`"):
        anetrain.Trainer("tiny", data=DATA, device="gpu")
    with pytest.raises(anetrain.AnetrainError, match="no-such-data.bin"):
        anetrain.Trainer("tiny", data=str(tmp_path / "no-such-data.bin"))
    short = anetrain.Trainer("tiny", data=DATA, steps=1, batch=2, seq=16, device="cpu")
    assert len(short.train(5)) == 1
    with pytest.raises(anetrain.AnetrainError, match="total of 1 steps"):
        short.step()
    with pytest.raises(ValueError, match="needs a directory"):
        short.save()
    with pytest.raises(anetrain.AnetrainError, match="carries no tokenizer"):
        anetrain.load("tiny").generate("Once", device="cpu")
    assert len(anetrain.load("tiny").generate([1, 2], max_new_tokens=3, device="cpu")) == 3
    with pytest.raises(ValueError, match="temperature -1"):
        model.generate("Once", temperature=-1)
    with pytest.raises(anetrain.AnetrainError, match="prompt token 100000"):
        model.generate([100000], device="cpu")


RESUME_OPTIONS = dict(steps=6, batch=2, seq=16, lr=3e-3, warmup=2, seed=5, device="cpu", eval_every=0)


def test_a_resumed_run_goes_on_with_the_uninterrupted_runs_losses(tmp_path):
    whole = [m["loss"] for m in anetrain.Trainer("tiny", data=DATA, **RESUME_OPTIONS).train(6)]
    run = tmp_path / "run"
    first = anetrain.Trainer("tiny", data=DATA, out=run, **RESUME_OPTIONS)
    first.train(3)
    first.save()
    with pytest.raises(anetrain.AnetrainError, match="in use by another trainer"):
        anetrain.Trainer.resume(run)
    del first  # frees the run directory
    with pytest.raises(ValueError, match="stpes"):
        anetrain.Trainer.resume(run, stpes=3)
    with pytest.raises(anetrain.AnetrainError, match="--seed is 6 but the checkpoint used 5"):
        anetrain.Trainer.resume(run, seed=6)
    resumed = anetrain.Trainer.resume(run)
    assert resumed.current_step == 3
    rest = resumed.train(10)
    assert [m["step"] for m in rest] == [4, 5, 6]
    assert [m["loss"] for m in rest] == whole[3:]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_a_python_run_directory_is_what_anetrain_train_writes_and_plot_reads(tmp_path):
    binary = anetrain_binary()
    if not binary.exists():
        pytest.skip(f"{binary} is absent: build it with `cargo build -p anetrain` or set ANETRAIN_BIN")
    py_run = tmp_path / "py-run"
    trainer = anetrain.Trainer("tiny", data=DATA, out=py_run, **RESUME_OPTIONS)
    taken = trainer.train(6)
    del trainer
    cli_run = tmp_path / "cli-run"
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in RESUME_OPTIONS.items()]
    subprocess.run(
        [binary, "train", "--out", cli_run, "--data", DATA, "--sample-tokens", "0", *flags],
        capture_output=True, text=True, check=True,
    )
    py_lines = [json.loads(line) for line in (py_run / "metrics.jsonl").read_text().splitlines()]
    cli_lines = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in py_lines] == [m["step"] for m in taken] == [1, 2, 3, 4, 5, 6]
    assert [set(m) for m in py_lines] == [set(m) for m in cli_lines]
    # Same settings, same device, same seed: the same losses, whichever front end trained.
    assert [m["loss"] for m in py_lines] == [m["loss"] for m in cli_lines]
    py_json = json.loads((py_run / "run.json").read_text())
    cli_json = json.loads((cli_run / "run.json").read_text())
    assert set(py_json) == set(cli_json)
    assert py_json["options"] == cli_json["options"]
    assert (py_run / "ckpt-00000006" / "meta.json").is_file()
    picture = tmp_path / "runs.svg"
    plotted = subprocess.run(
        [binary, "plot", py_run, cli_run, "--out", picture, "--metric", "lr"],
        capture_output=True, text=True,
    )
    assert plotted.returncode == 0, plotted.stderr
    svg = picture.read_text()
    assert "py-run" in svg and "cli-run" in svg


def test_resuming_refuses_lora_settings_by_name(tmp_path):
    with pytest.raises(anetrain.AnetrainError, match="drop the LoRA settings"):
        anetrain.Trainer.resume(tmp_path, lora_rank=4)
