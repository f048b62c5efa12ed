"""Training configs: defaults, checks that name the bad key, paths, the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from ground.errors import FileFormatError, InputError
from pixglot.cli import main
from training import config as train_config
from training import load_config, resolve_config
from training.loop import build_model

REPO = Path(__file__).resolve().parent.parent
MINIMAL = {"steps": 10, "model": {"base": "tiny-test"}, "data": {"train": "shards"}}


def with_value(dotted: str, value: object) -> dict:
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in MINIMAL.items()}
    section, _, key = dotted.rpartition(".")
    (raw.setdefault(section, {}) if section else raw)[key] = value
    return raw


def test_defaults_are_filled_in_and_paths_made_absolute(tmp_path: Path) -> None:
    config = resolve_config(MINIMAL, base_dir=tmp_path)
    assert config["data"]["train"] == [str((tmp_path / "shards").resolve())]
    assert config["loss"]["kind"] == "softmax"
    assert config["optimizer"]["name"] == "adamw"
    assert config["schedule"]["kind"] == "cosine"
    assert config["data"]["text_pairs"] == 0.0
    assert set(config) == set(train_config.SCHEMA)


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("optimizer.lr", -1, "optimizer.lr: expected a number > 0"),
        ("optimizer.lr", "fast", "optimizer.lr: expected a number"),
        ("steps", 0, "steps: expected an integer >= 1"),
        ("steps", 2.5, "steps: expected an integer"),
        ("data.text_pairs", 1.0, "data.text_pairs: expected a number >= 0 and < 1"),
        ("data.batch_size", 1, "data.batch_size: expected an integer >= 2"),
        ("loss.kind", "hinge", "loss.kind: expected one of 'softmax', 'sigmoid'"),
        ("optimizer.name", "sgd", "optimizer.name: expected one of 'adamw', 'adafactor'"),
        ("schedule.kind", "linear", "schedule.kind: expected one of"),
        ("run.device", "tpu", "run.device: expected"),
        ("run.grad_checkpointing", "yes", "run.grad_checkpointing: expected true or false"),
        ("data.cache_images", "maybe", 'data.cache_images: expected true or false, got .maybe.; or "auto"'),
        ("data.resident", 1, 'data.resident: expected true or false, got 1; or "auto"'),
        ("run.text_chunks", -1, 'run.text_chunks: expected an integer >= 0, got -1; or "auto"'),
        ("data.eval_seen_images", -5, "data.eval_seen_images: expected an integer >= 0"),
        ("model.architecture", 5, "model.architecture: expected a table"),
        ("data.languages", [""], "data.languages: expected a list of non-empty strings"),
        ("knows", ["photos", 3], "knows: expected a list of non-empty strings"),
        ("optimizer.lrr", 0.1, "unknown training config key(s) optimizer.lrr"),
        ("colour", "red", "unknown training config key(s) colour"),
    ],
)
def test_bad_values_name_the_key(dotted: str, value: object, expected: str) -> None:
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        resolve_config(with_value(dotted, value))


@pytest.mark.parametrize("missing", ["steps", "data.train"])
def test_required_keys(missing: str) -> None:
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in MINIMAL.items()}
    section, _, key = missing.rpartition(".")
    del (raw[section] if section else raw)[key]
    with pytest.raises(InputError, match=f"lacks the required key {missing}"):
        resolve_config(raw)


def test_inconsistent_choices_are_refused() -> None:
    with pytest.raises(InputError, match="model.base and model.init_from exclude each other"):
        resolve_config(with_value("model.init_from", "some/model"))
    with pytest.raises(InputError, match="warmup_steps=20 exceeds steps=10"):
        resolve_config(with_value("schedule.warmup_steps", 20))
    with pytest.raises(InputError, match="model: give base"):
        resolve_config({"steps": 1, "data": {"train": "x"}})


def test_toml_file_paths_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "run.toml"
    path.write_text('steps = 5\nout = "runs/a"\n[model]\nbase = "tiny-test"\n[data]\ntrain = ["../shards"]\n')
    config = load_config(path)
    assert config["data"]["train"] == [str((tmp_path / "shards").resolve())]
    assert config["out"] == str((tmp_path / "cfg" / "runs" / "a").resolve())
    monkeypatch.chdir(tmp_path)
    config = load_config(path, {"data.train": ["elsewhere"], "out": "o"})
    assert config["data"]["train"] == [
        str(tmp_path / "elsewhere")
    ]  # overrides start at the current directory
    assert config["out"] == str(tmp_path / "o")


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = = 3\n")
    with pytest.raises(FileFormatError, match="broken.toml: not a valid TOML file"):
        load_config(broken)
    with pytest.raises(FileFormatError, match="missing.toml: cannot read"):
        load_config(tmp_path / "missing.toml")


def test_cli_reports_a_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('steps = 5\n[model]\nbase = "tiny-test"\n[data]\ntrain = "x"\n[optimizer]\nlr = "high"\n')
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pixglot: error: optimizer.lr: expected a number")
    assert "\n" not in err


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "model" / "train" / "configs").glob("*.toml"))
    + [REPO / "data/assets/models/demo/train.toml"],
    ids=lambda p: p.name if p.parent.name == "configs" else "demo-model",
)
def test_shipped_configs_resolve(path: Path) -> None:
    config = load_config(path, {"data.train": ["shards"]})
    assert config["steps"] >= 1
    if not config["model"]["init_from"]:  # the others need a downloaded model
        net, model_config = build_model(config, "check")
        assert model_config["renderer"]["image_size"] == net.config.image_size
        # What the model knows comes from its recipe, never from the base config it starts from.
        assert model_config.get("knows", []) == config["knows"]
    if path.parent.name != "configs":
        assert config["knows"] == ["emoji"]


def test_empty_training_data_is_named() -> None:
    with pytest.raises(InputError, match="data.train is empty"):
        resolve_config(with_value("data.train", []))
