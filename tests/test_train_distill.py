"""Distillation: teacher embeddings as files, the student's head, its batches, and whole runs that
learn a real teacher's embeddings (a toy model trained here) and resume exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from train_toy import COLOURS, png, toy_config, write_colour_shards

import model
from ground.errors import FileFormatError, InputError
from model.vit import ViT
from pixglot.cli import main
from training import train
from training.distill import SELF_TARGETS_FILE, epoch_batch, head_for, semi_orthogonal
from training.embed_teacher import embed_shards, load_teacher
from training.loop import LOG_FILE
from training.teacher import (
    read_teacher_images,
    read_teacher_texts,
    write_teacher_images,
    write_teacher_texts,
)

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


# ---------------------------------------------------------------- teacher files


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.tuples(texts, st.sampled_from(["en", "de", "bn", "th"])), min_size=1, max_size=12),
    dim=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_teacher_texts_round_trip_exactly(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]], dim: int, seed: int
) -> None:
    vectors = np.random.default_rng(seed).normal(size=(len(rows), dim)).astype(np.float32)
    path = write_teacher_texts(
        tmp_path_factory.mktemp("t") / "texts.parquet",
        [t for t, _ in rows],
        [lang for _, lang in rows],
        vectors,
    )
    read = read_teacher_texts([path])
    assert read.texts == [t for t, _ in rows] and read.languages == [lang for _, lang in rows]
    assert np.array_equal(read.vectors, vectors)
    only_en = (
        read_teacher_texts([path.parent], languages=["en"]) if any(lg == "en" for _, lg in rows) else None
    )
    if only_en is not None:
        assert only_en.languages == ["en"] * sum(lang == "en" for _, lang in rows)


def _table(path: Path, **columns: list) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"text": ["a"], "language": ["en"]}, "lacks the column.*teacher_text_emb"),
        (
            {"text": ["a", "b"], "language": ["en", "en"], "teacher_text_emb": [[1.0, 2.0], [1.0]]},
            "row 1 has 1 values, row 0 has 2",
        ),
        (
            {"text": ["a"], "language": ["en"], "teacher_text_emb": [[float("nan"), 1.0]]},
            "row 0 is not finite or is all zeros",
        ),
        (
            {"text": ["a"], "language": ["en"], "teacher_text_emb": [[0.0, 0.0]]},
            "row 0 is not finite or is all zeros",
        ),
        (
            {"text": ["a", None], "language": ["en", "en"], "teacher_text_emb": [[1.0], [1.0]]},
            "column 'text' has 1 empty",
        ),
        (
            {"text": ["a"], "language": ["en"], "teacher_text_emb": [["x"]]},
            "expected floats|expected a list of floats",
        ),
        ({"text": ["a"], "language": ["en"], "teacher_text_emb": [1.0]}, "expected a list of floats"),
    ],
)
def test_bad_teacher_text_files_are_refused_with_their_path_and_reason(
    tmp_path: Path, columns: dict, message: str
) -> None:
    path = _table(tmp_path / "bad.parquet", **columns)
    with pytest.raises(FileFormatError, match=message) as caught:
        read_teacher_texts([path])
    assert str(path) in str(caught.value)


def test_teacher_files_must_agree_on_the_size_of_their_vectors(tmp_path: Path) -> None:
    a = write_teacher_texts(tmp_path / "a.parquet", ["x"], ["en"], np.ones((1, 3)))
    b = write_teacher_texts(tmp_path / "b.parquet", ["y"], ["en"], np.ones((1, 4)))
    with pytest.raises(FileFormatError, match="vectors of 4 values, but .*a.parquet has 3"):
        read_teacher_texts([a, b])
    write_teacher_images(tmp_path / "i.parquet", ["k", "k"], np.array([[1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(InputError, match="key 'k' is given twice with different vectors"):
        read_teacher_images([tmp_path / "i.parquet"])
    with pytest.raises(InputError, match="no teacher text embeddings in the language.*bn"):
        read_teacher_texts([a], languages=["bn"])


# ---------------------------------------------------------------- the student's head and batches


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 40), columns=st.integers(1, 40), seed=st.integers(0, 1000))
def test_semi_orthogonal_maps_are_orthonormal_on_the_smaller_side(rows: int, columns: int, seed: int) -> None:
    q = semi_orthogonal(rows, columns, seed).double()
    assert q.shape == (rows, columns)
    small = q.T @ q if rows >= columns else q @ q.T
    assert torch.allclose(small, torch.eye(min(rows, columns), dtype=torch.float64), atol=1e-5)
    assert torch.equal(q, semi_orthogonal(rows, columns, seed).double())


@pytest.mark.parametrize("pool_head", [32, None])
def test_a_wider_head_keeps_the_student_s_cosines(pool_head: int | None) -> None:
    torch.manual_seed(0)
    net = ViT(
        {
            "variant": "Ti",
            "width": 48,
            "depth": 1,
            "heads": 2,
            "mlp_dim": 64,
            "image_size": 32,
            "patch_size": 16,
            "out_dim": pool_head,
        }
    ).eval()
    pixels = torch.rand(6, 3, 32, 32) * 2 - 1
    wide = head_for(net, 80, seed=3).eval()
    assert wide.dim == 80 and wide.config.out_dim == 80
    with torch.no_grad():
        before, after = net(pixels), wide(pixels)
    assert torch.allclose(before @ before.T, after @ after.T, atol=1e-5)
    assert head_for(net, net.dim, seed=3) is net
    narrow = head_for(net, 8, seed=3)
    assert narrow(pixels).shape == (6, 8)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), size=st.integers(1, 40), seed=st.integers(0, 50), start=st.integers(0, 5))
def test_every_epoch_of_distillation_batches_visits_each_item_once(
    n: int, size: int, seed: int, start: int
) -> None:
    batches = [epoch_batch(n, size, seed, 10, b) for b in range(start, start + 3)]
    stream = np.concatenate(batches)
    offset = start * size
    for epoch in range(offset // n + 1, (offset + len(stream)) // n):
        window = stream[epoch * n - offset : (epoch + 1) * n - offset]
        assert sorted(window.tolist()) == list(range(n))
    assert all(np.array_equal(b, epoch_batch(n, size, seed, 10, start + i)) for i, b in enumerate(batches))


# ---------------------------------------------------------------- whole runs


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_shards(tmp_path_factory.mktemp("colours") / "shards")


@pytest.fixture(scope="module")
def teacher(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A toy model trained on the colours (the teacher) and its embeddings of the shards."""
    root = tmp_path_factory.mktemp("teacher")
    train(toy_config(shards, root / "model", steps=60))
    summary = embed_shards(load_teacher(f"pixglot:{root / 'model'}"), [shards], root / "embeddings")
    assert summary["text_rows"] == 16 and summary["images"] == 8
    return root / "model", root / "embeddings"


def _distill_config(shards: Path, embeddings: Path, out: Path, **sections: dict) -> dict:
    """A fresh student of 16 dimensions (the teacher has 32) that reads text at another font size."""
    distill = {
        "texts": [str(embeddings / "texts")],
        "images": [str(embeddings / "images")],
        "text_batch": 8,
        "image_batch": 4,
        **sections.pop("distill", {}),
    }
    return toy_config(
        shards,
        out,
        steps=sections.pop("steps", 60),
        model={
            "base": "tiny-test",
            "architecture": {"image_size": 64, "out_dim": 16},
            "renderer": {"font_size": 12},
        },
        distill=distill,
        **sections,
    )


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]


def _agreement(student: Path, teacher: Path) -> float:
    """Mean cosine of the student's and the teacher's embeddings of the captions and pictures."""
    captions = [t for name, (_, german) in COLOURS.items() for t in (name, german)]
    pictures = [png(rgb) for rgb, _ in COLOURS.values()]
    s, t = model.load(student), model.load(teacher)
    texts = (s.encode_texts(captions) * t.encode_texts(captions)).sum(1)
    images = (s.encode_images(pictures) * t.encode_images(pictures)).sum(1)
    return float(np.concatenate([texts, images]).mean())


def test_a_student_learns_the_teacher_s_embeddings(
    shards: Path, teacher: tuple[Path, Path], tmp_path: Path
) -> None:
    teacher_model, embeddings = teacher
    start = tmp_path / "start"  # the student as it starts: one step at a learning rate of nothing
    train(
        _distill_config(
            shards, embeddings, start, steps=1, optimizer={"lr": 1e-12}, schedule={"warmup_steps": 0}
        )
    )
    out = tmp_path / "student"
    train(
        _distill_config(
            shards,
            embeddings,
            out,
            run={"log_every": 5, "precision": "fp32", "threads": 1, "checkpoint_every": 0},
        )
    )

    terms = [r["terms"] for r in _log(out) if "terms" in r]
    assert set(terms[0]) == {"distill_text", "distill_image"}
    for name in terms[0]:
        assert terms[-1][name] < 0.5 * terms[0][name], (name, terms[0], terms[-1])
    before, after = _agreement(start, teacher_model), _agreement(out, teacher_model)
    assert after > 0.9 and after > before + 0.3, (before, after)

    student = model.load(out)
    assert student.dim == 32  # the teacher's space: the learned map is the student's head
    assert student.config["renderer"]["font_size"] == 12
    saved = json.loads((out / "config.json").read_text())
    assert saved["provenance"]["trained_with"] == "pixglot distill"
    assert saved["training"]["data"]["distill"]["text_rows"] == 16
    assert saved["training"]["data"]["distill"]["images"] == 8
    # It finds what the teacher finds.
    scores = (
        student.encode_texts(["red", "blau"])
        @ student.encode_images([png(COLOURS["red"][0]), png(COLOURS["blue"][0])]).T
    )
    assert (scores.argmax(1) == [0, 1]).all(), scores


def test_self_anchored_images_stay_where_they_started(
    shards: Path, teacher: tuple[Path, Path], tmp_path: Path
) -> None:
    """The student is the teacher's own weights; its texts learn new targets (every caption the
    teacher's vector of another colour), its images are held to their starting vectors."""
    teacher_model, embeddings = teacher
    texts = read_teacher_texts([embeddings / "texts"])
    shifted = np.roll(texts.vectors, 2, axis=0)
    write_teacher_texts(tmp_path / "shifted.parquet", texts.texts, texts.languages, shifted)
    out = tmp_path / "anchored"
    config = toy_config(
        shards,
        out,
        steps=30,
        model={"base": "", "init_from": str(teacher_model), "architecture": {}},
        distill={
            "texts": [str(tmp_path / "shifted.parquet")],
            "image_target": "self",
            "image_weight": 5.0,
            "text_batch": 8,
            "image_batch": 8,
        },
    )
    train(config)
    pictures = [png(rgb) for rgb, _ in COLOURS.values()]
    cosines = (
        model.load(out).encode_images(pictures) * model.load(teacher_model).encode_images(pictures)
    ).sum(1)
    assert cosines.min() > 0.95, cosines
    assert np.load(out / SELF_TARGETS_FILE).shape == (8, 32)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model.safetensors")


def test_a_resumed_distillation_ends_with_the_same_weights(
    shards: Path, teacher: tuple[Path, Path], tmp_path: Path
) -> None:
    _, embeddings = teacher
    sections = {
        "steps": 8,
        "distill": {"contrastive_weight": 0.5, "image_target": "self", "images": []},
        "run": {
            "keep_checkpoints": 5,
            "checkpoint_every": 4,
            "log_every": 1,
            "precision": "fp32",
            "threads": 1,
        },
    }
    straight = tmp_path / "straight"
    train(_distill_config(shards, embeddings, straight, **json.loads(json.dumps(sections))))
    resumed = tmp_path / "resumed"
    config = _distill_config(shards, embeddings, resumed, **json.loads(json.dumps(sections)))
    train(config)
    for name in ("model.safetensors", "config.json", "checkpoints/step-0000008.pt"):
        (resumed / name).unlink()
    train(config, resume=True)
    wa, wb = _weights(straight), _weights(resumed)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-6, rtol=0), key
    assert {"contrastive", "distill_text", "distill_image"} == set(_log(straight)[1]["terms"])

    # Other teacher vectors under the same path: resuming would not give the same model.
    texts = read_teacher_texts([embeddings / "texts"])
    changed = tmp_path / "changed"
    changed.mkdir()
    write_teacher_texts(changed / "t.parquet", texts.texts, texts.languages, texts.vectors)
    config = _distill_config(shards, changed, resumed, **json.loads(json.dumps(sections)))
    config["distill"]["texts"] = [str(changed)]
    with pytest.raises(InputError, match="teacher's embeddings changed|other values of distill.texts"):
        train(config, resume=True)


@pytest.mark.parametrize(
    ("distill", "message"),
    [
        ({"texts": [], "images": []}, None),
        ({"images": [], "image_weight": 1.0}, 'image_target = "teacher" but distill.images is empty'),
        ({"texts": [], "text_weight": 1.0}, "text_weight > 0 but distill.texts is empty"),
        ({"text_weight": 0.0, "image_weight": 0.0}, "every weight is 0"),
    ],
)
def test_distill_configs_that_cannot_work_are_refused(
    shards: Path, tmp_path: Path, distill: dict, message: str | None
) -> None:
    texts = write_teacher_texts(tmp_path / "t.parquet", ["red"], ["en"], np.ones((1, 4)))
    images = write_teacher_images(tmp_path / "i.parquet", ["red"], np.ones((1, 4)))
    sections = {"texts": [str(texts)], "images": [str(images)], **distill}
    if message is None:
        assert toy_config(shards, tmp_path / "run", distill=sections)["distill"]["texts"] == []
        return
    with pytest.raises(InputError, match=message):
        toy_config(shards, tmp_path / "run", distill=sections)


def test_teacher_images_must_be_images_of_the_training_data(shards: Path, tmp_path: Path) -> None:
    texts = write_teacher_texts(tmp_path / "t.parquet", ["red"], ["en"], np.ones((1, 4)))
    images = write_teacher_images(tmp_path / "i.parquet", ["no-such-key"], np.ones((1, 4)))
    config = toy_config(shards, tmp_path / "run", distill={"texts": [str(texts)], "images": [str(images)]})
    with pytest.raises(
        InputError, match="none of the teacher's image keys is an image of data.train.*no-such-key"
    ):
        train(config)
    mismatched = write_teacher_images(tmp_path / "j.parquet", ["red"], np.ones((1, 5)))
    config = toy_config(
        shards, tmp_path / "run2", distill={"texts": [str(texts)], "images": [str(mismatched)]}
    )
    with pytest.raises(InputError, match="text vectors have 4 values and its image vectors 5"):
        train(config)


def test_embed_teacher_targets_the_english_source_and_goes_on_after_a_stop(
    shards: Path, teacher: tuple[Path, Path], tmp_path: Path
) -> None:
    teacher_model, _ = teacher
    table = pq.read_table(next(shards.glob("*.parquet")))
    english = {key: key for key in table.column("key").to_pylist()}  # the colour's English name is its key
    with_source = tmp_path / "translated"
    with_source.mkdir()
    pq.write_table(
        table.append_column("source", pa.array([english[k] for k in table.column("key").to_pylist()])),
        with_source / "part-0.parquet",
    )
    out = tmp_path / "emb"
    embedder = load_teacher(f"pixglot:{teacher_model}")
    with pytest.raises(FileFormatError, match="lacks the column.*source.*English source"):
        embed_shards(embedder, [shards], tmp_path / "nosource", target="source")
    embed_shards(embedder, [with_source], out, target="source")
    read = read_teacher_texts([out / "texts"])
    vectors = dict(zip(read.texts, read.vectors, strict=True))
    own = model.load(teacher_model).encode_texts(["red", "rot"])
    assert np.allclose(vectors["rot"], own[0], atol=1e-5)  # German rows carry the English vector
    assert not np.allclose(vectors["rot"], own[1], atol=1e-3)

    written = (out / "texts" / "part-0.parquet").stat().st_mtime_ns
    summary = embed_shards(embedder, [with_source], out, target="source")
    assert (out / "texts" / "part-0.parquet").stat().st_mtime_ns == written
    assert summary["text_rows"] == len(read)
    with pytest.raises(InputError, match="holds the embeddings of .* \\(target source, fraction 1.0\\)"):
        embed_shards(embedder, [with_source], out, target="text")


def test_the_command_line_embeds_a_teacher_and_distils(
    shards: Path, teacher: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    teacher_model, _ = teacher
    assert (
        main(
            [
                "distill",
                "embed-teacher",
                f"pixglot:{teacher_model}",
                str(shards),
                "--out",
                str(tmp_path / "emb"),
            ]
        )
        == 0
    )
    assert "16 text rows and 8 images" in capsys.readouterr().out
    recipe = tmp_path / "distill.toml"
    recipe.write_text(
        'steps = 3\n[model]\nbase = "tiny-test"\narchitecture = {image_size = 64}\n'
        '[data]\nbatch_size = 8\nworkers = 0\n[run]\nprecision = "fp32"\nthreads = 1\n'
        "[distill]\ntext_batch = 4\nimage_batch = 4\n"
    )
    argv = ["distill", "train", "--config", str(recipe), "--data", str(shards), "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    assert "no teacher in its [distill] section" in capsys.readouterr().err
    emb = tmp_path / "emb"
    argv += ["--teacher-texts", str(emb / "texts"), "--teacher-images", str(emb / "images")]
    assert main(argv) == 0
    assert "distill_text" in capsys.readouterr().err
    assert model.load(tmp_path / "s").dim == 32


def test_a_fraction_of_the_captions_is_the_same_fixed_draw_every_time(
    shards: Path, teacher: tuple[Path, Path], tmp_path: Path
) -> None:
    teacher_model, full = teacher
    embedder = load_teacher(f"pixglot:{teacher_model}")
    half = embed_shards(embedder, [shards], tmp_path / "half", fraction=0.5)
    again = embed_shards(embedder, [shards], tmp_path / "again", fraction=0.5)
    rows = read_teacher_texts([tmp_path / "half" / "texts"])
    assert 0 < half["text_rows"] < 16 and half["images"] == 8
    assert rows.texts == read_teacher_texts([tmp_path / "again" / "texts"]).texts
    assert again["text_rows"] == half["text_rows"]
    everything = read_teacher_texts([full / "texts"])
    vectors = dict(zip(everything.texts, everything.vectors, strict=True))
    assert all(np.allclose(vectors[t], v) for t, v in zip(rows.texts, rows.vectors, strict=True))
    with pytest.raises(InputError, match="fraction: expected a number in"):
        embed_shards(embedder, [shards], tmp_path / "none", fraction=0.0)


def test_captions_of_held_out_images_are_not_taught(
    shards: Path, teacher: tuple[Path, Path], tmp_path: Path
) -> None:
    _, embeddings = teacher
    out = tmp_path / "run"
    config = _distill_config(shards, embeddings, out, steps=2, data={"eval_fraction": 0.45})
    train(config)
    data = json.loads((out / "config.json").read_text())["training"]["data"]
    held = data["held_out"]["images"]
    assert 0 < held < 8
    # Each colour has two captions (English, German), and the teacher's rows name their image.
    assert data["distill"]["text_rows"] == 2 * (8 - held)
    assert data["distill"]["images"] == 8 - held
