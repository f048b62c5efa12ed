"""The trainer end to end on a toy task: learning, outputs, losses, co-training, init_from, exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import pytest
import torch
from crash_support import kill_group, run_killed_at
from safetensors.torch import load_file
from train_toy import toy_config, write_colour_shards

import model
from ground.errors import FileFormatError, InputError
from training import checkpoint as ckpt
from training import train
from training.loop import LOG_FILE

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_shards(tmp_path_factory.mktemp("colours") / "shards")


def log_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in log_of(out) if "loss" in r]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model.safetensors")


def assert_same_weights(a: Path, b: Path, atol: float = 1e-6) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=atol, rtol=0), key


def test_learns_the_toy_task_and_writes_a_model_directory(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = toy_config(shards, out, steps=80, data={"eval": [str(shards)]}, run={"log_every": 10})
    result = train(config)
    curve = losses(out)
    assert curve[-1] < 0.4 * curve[0], curve
    assert result.held_out["text_to_image"]["recall@1"] >= 0.75  # 8 colours: chance is 1/8

    encoder = model.load(out)
    assert encoder.name == "run" and encoder.config["renderer"]["image_size"] == 64
    texts = encoder.encode_texts(["red", "blue", "rot", "blau"])
    from train_toy import COLOURS, png

    images = encoder.encode_images([png(COLOURS["red"][0]), png(COLOURS["blue"][0])])
    scores = texts @ images.T
    assert (scores.argmax(1) == [0, 1, 0, 1]).all(), scores

    saved = json.loads((out / "config.json").read_text())
    training = saved["training"]
    assert training["config"] == config
    assert training["data"]["fingerprint"] == saved["provenance"]["data_fingerprint"]
    assert training["data"]["pairs"] == 16 and training["data"]["images"] == 8
    assert saved["provenance"]["code_revision"]
    assert training["held_out"]["text_to_image"]["recall@1"] == result.held_out["text_to_image"]["recall@1"]
    records = log_of(out)
    assert records[0]["event"] == "started" and records[-1]["event"] == "finished"
    assert {"step", "loss", "lr", "temperature", "grad_norm"} <= set(records[1])
    assert any("eval" in r for r in records)


def test_sigmoid_loss_learns_its_bias(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "sigmoid"
    train(toy_config(shards, out, steps=30, loss={"kind": "sigmoid"}))
    curve = losses(out)
    biases = [r["bias"] for r in log_of(out) if "bias" in r]
    assert curve[-1] < curve[0]
    assert biases[0] == pytest.approx(-10, abs=0.1) and biases[-1] != biases[0]


@pytest.mark.parametrize(
    "sections",
    [
        {"data": {"text_pairs": 0.25}},
        {"data": {"text_pairs": 0.25, "captions_per_image": 2}},
        {"optimizer": {"name": "adafactor", "accumulate": 2}, "schedule": {"kind": "rsqrt"}},
        {"data": {"cache_images": False, "shuffle_window": 1}, "run": {"grad_checkpointing": True}},
        {"data": {"text_pairs": 0.25}, "run": {"precision": "bf16"}},
    ],
    ids=[
        "co-training",
        "grouped-captions",
        "adafactor-accumulate-rsqrt",
        "streamed-checkpointed",
        "cpu-bf16",
    ],
)
def test_options_train(shards: Path, tmp_path: Path, sections: dict) -> None:
    out = tmp_path / "run"
    train(toy_config(shards, out, steps=30, **sections))
    curve = losses(out)
    assert curve[-1] < curve[0]
    assert model.load(out).encode_texts(["red"]).shape == (1, 32)


def test_init_from_a_model_directory(shards: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    train(toy_config(shards, first, steps=10))
    # A tiny learning rate: the result must stay at the starting weights, not at a fresh initialisation.
    second = tmp_path / "second"
    config = toy_config(
        shards,
        second,
        steps=2,
        seed=7,
        model={"base": "", "init_from": str(first), "architecture": {}, "renderer": {"font_size": 10}},
        optimizer={"lr": 1e-12, "weight_decay": 0.0},
    )
    train(config)
    assert_same_weights(first, second, atol=1e-6)
    saved = json.loads((second / "config.json").read_text())
    assert saved["provenance"]["init"] == "from_model"
    assert saved["provenance"]["init_from"] == str(first)
    assert saved["renderer"]["font_size"] == 10

    wider = toy_config(
        shards,
        tmp_path / "third",
        model={"base": "", "init_from": str(first), "architecture": {"width": 128}},
    )
    with pytest.raises(InputError, match="model.architecture: width cannot differ"):
        train(wider)


def test_resume_from_a_checkpoint_ends_with_the_same_weights(
    shards: Path, tmp_path: Path, pixglot_home: Path
) -> None:
    straight = tmp_path / "straight"
    train(toy_config(shards, straight, steps=8, data={"text_pairs": 0.25}))
    # The same run, interrupted after its step-4 checkpoint: later files are gone, as after a kill.
    resumed = tmp_path / "resumed"
    config = toy_config(shards, resumed, steps=8, data={"text_pairs": 0.25}, run={"keep_checkpoints": 5})
    train(config)
    for name in ("model.safetensors", "config.json", "checkpoints/step-0000008.pt"):
        (resumed / name).unlink()
    assert [s for s, _ in ckpt.list_checkpoints(resumed)] == [4]
    with pytest.raises(InputError, match="already holds a training run.*pass --resume"):
        train(config)
    train(config, resume=True)
    assert_same_weights(straight, resumed)
    segments = json.loads((resumed / "config.json").read_text())["training"]["segments"]
    assert segments == [
        {"from_step": 0, "device": "cpu", "precision": "fp32"},
        {"from_step": 4, "device": "cpu", "precision": "fp32"},
    ]
    steps = [r["step"] for r in log_of(resumed) if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 8  # steps after the checkpoint are logged once

    changed = toy_config(shards, resumed, steps=8, data={"text_pairs": 0.25}, optimizer={"lr": 0.5})
    with pytest.raises(InputError, match="other values of optimizer.lr"):
        train(changed, resume=True)
    # The three runs drew their texts once: the later ones read the first one's cache.
    assert len(list((pixglot_home / "cache" / "rendered-texts").glob("*/*.parquet"))) == 1


def test_checkpoints_keep_the_newest_and_load_back_what_was_saved(tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"  # neither folder exists yet
    for step in (5, 10, 15):
        ckpt.save(out, step, {"step": step, "weights": torch.full((3,), float(step))}, keep=2)
    (out / "checkpoints" / "step-0000020.pt.tmp").write_bytes(b"cut short")  # not a checkpoint
    (out / "checkpoints" / "notes.txt").write_text("nor this")
    assert ckpt.list_checkpoints(out) == [
        (10, out / "checkpoints" / "step-0000010.pt"),
        (15, out / "checkpoints" / "step-0000015.pt"),
    ]
    state = ckpt.load(out / "checkpoints" / "step-0000015.pt")
    assert state["step"] == 15 and torch.equal(state["weights"], torch.tensor([15.0, 15.0, 15.0]))


def test_a_damaged_or_unsafe_checkpoint_is_refused_with_its_path_named(tmp_path: Path) -> None:
    path = ckpt.save(tmp_path / "run", 5, {"step": 5, "weights": torch.zeros(1000)}, keep=1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    damaged = r"unreadable training checkpoint \((RuntimeError|UnpicklingError|EOFError): "
    with pytest.raises(FileFormatError, match=damaged) as refused:
        ckpt.load(path)
    assert refused.value.path == str(path)
    # Loading runs no code from the file: only tensors and plain values are accepted.
    torch.save({"step": 5, "where": PurePosixPath("elsewhere")}, path)
    with pytest.raises(FileFormatError, match=r"unreadable training checkpoint \(UnpicklingError: "):
        ckpt.load(path)


def test_padded_text_groups_train_the_model_exact_groups_train(shards: Path, tmp_path: Path) -> None:
    # Texts read in fixed-size groups, padded and masked (what GPUs use), against one group per
    # height: the same batches and the same maths, so the same weights up to rounding.
    exact, padded = tmp_path / "exact", tmp_path / "padded"
    sections = {"data": {"text_pairs": 0.25, "single_keywords": 0.5}, "steps": 6}
    train(toy_config(shards, exact, run={"text_chunks": 0}, **sections))
    train(toy_config(shards, padded, run={"text_chunks": 3}, **sections))
    assert_same_weights(exact, padded, atol=1e-4)


def test_training_images_are_evaluated_too(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "seen"
    train(toy_config(shards, out, steps=4, data={"eval": [str(shards)], "eval_seen_images": 3}))
    records = log_of(out)
    seen = [r["eval_seen"] for r in records if "eval_seen" in r]
    held = [r["eval"] for r in records if "eval" in r]
    assert len(seen) == len(held) == 1
    assert seen[0]["n_images"] == 3 and held[0]["n_images"] == 8
    assert all("seconds" in r for r in records if "loss" in r)
    # Evaluated on every training image, the run scores what the held-out evaluation of the same
    # shards scores: the training pictures it reuses are those images.
    everything = tmp_path / "all"
    train(toy_config(shards, everything, steps=4, data={"eval": [str(shards)], "eval_seen_images": 8}))
    final = [r for r in log_of(everything) if "eval_seen" in r or "eval" in r]
    assert final[-1]["eval_seen"] == final[-2]["eval"]


@pytest.fixture(scope="module")
def straight_run(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run the killed ones must end equal to: 200 steps, a checkpoint every 5, none killed."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train(toy_config(shards, out, **KILLED_RUN))
    return out


KILLED_RUN = {"steps": 200, "run": {"checkpoint_every": 5, "log_every": 5, "keep_checkpoints": 1}}


def killed_run_command(shards: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    out = tmp_path / "killed"
    config_file = tmp_path / "train.json"
    config_file.write_text(json.dumps(toy_config(shards, out, **KILLED_RUN)))
    return out, ["train", "--config", str(config_file), "--resume", "--quiet"]


def resume_to_the_end(argv: list[str], out: Path, straight: Path) -> None:
    rerun = subprocess.run(
        [sys.executable, "-m", "pixglot", *argv],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert any(r.get("event") == "resumed" for r in log_of(out))
    assert_same_weights(straight, out, atol=1e-5)


def test_kill_9_then_resume_matches_an_uninterrupted_run(
    shards: Path, straight_run: Path, tmp_path: Path
) -> None:
    out, argv = killed_run_command(shards, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "pixglot", *argv],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(s >= 10 for s, _ in ckpt.list_checkpoints(out)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        kill_group(process.pid)
    killed_at = ckpt.list_checkpoints(out)[-1][0]
    assert killed_at < KILLED_RUN["steps"] and not (out / "model.safetensors").exists()
    resume_to_the_end(argv, out, straight_run)


def test_a_kill_inside_a_checkpoint_write_resumes_from_the_one_before(
    shards: Path, straight_run: Path, tmp_path: Path
) -> None:
    out, argv = killed_run_command(shards, tmp_path)
    # The step-10 checkpoint is half written when the process dies.
    run_killed_at(argv, "torch:save", "halfway", 2, dict(os.environ))
    assert [step for step, _ in ckpt.list_checkpoints(out)] == [5]
    assert ckpt.load(ckpt.list_checkpoints(out)[0][1])["step"] == 5
    resume_to_the_end(argv, out, straight_run)


def test_worker_processes_build_the_same_batches(shards: Path, tmp_path: Path) -> None:
    inline, workers = tmp_path / "inline", tmp_path / "workers"
    train(toy_config(shards, inline, steps=6, data={"text_pairs": 0.25}))
    train(toy_config(shards, workers, steps=6, data={"text_pairs": 0.25, "workers": 2}))
    assert_same_weights(inline, workers)


def test_a_run_uses_its_threads_and_gives_the_caller_s_back(shards: Path, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    during: list[int] = []
    try:
        torch.set_num_threads(before + 2)
        config = toy_config(shards, tmp_path / "run", steps=2, run={"threads": 1})
        train(config, on_record=lambda record: during.append(torch.get_num_threads()))
        assert set(during) == {1}
        assert torch.get_num_threads() == before + 2
    finally:
        torch.set_num_threads(before)
