"""End to end: a real tiny model on small XM3600-format data -> reports, a database row, compare, list."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from sqlalchemy import select

import model
from evaluation.retrieval import DataIssuesError, evaluate_retrieval
from evaluation.runs import get_run, list_runs
from ground.db import connect, eval_runs
from pixglot.cli import main

COLOURS = {"k1": (220, 20, 20), "k2": (20, 200, 20), "k3": (20, 20, 220), "k4": (230, 230, 20)}


def _write(root: Path, lines: list[dict | str], images: dict[str, bytes | tuple[int, int, int]]) -> Path:
    (root / "images").mkdir(parents=True)
    text = "\n".join(
        line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines
    )
    (root / "captions.jsonl").write_text(text + "\n", encoding="utf-8")
    for name, content in images.items():
        if isinstance(content, bytes):
            (root / "images" / name).write_bytes(content)
        else:
            Image.new("RGB", (48, 40), content).save(root / "images" / name)
    return root


def _caps(*captions: str) -> dict:
    return {"caption": list(captions), "caption/tokenized": [c.lower() for c in captions]}


@pytest.fixture
def clean_data(tmp_path) -> Path:
    lines = [
        {
            "image/key": "k1",
            "en": _caps("a red square", "something red"),
            "de": _caps("ein rotes Quadrat"),
            "mi": _caps("he tapawhā whero"),
        },
        {"image/key": "k2", "en": _caps("a green square", "green"), "de": _caps("ein grünes Quadrat")},
        {"image/key": "k3", "en": _caps("a blue square"), "de": _caps("ein blaues Quadrat", "blau")},
        {
            "image/key": "k4",
            "en": _caps("a yellow square"),
            "de": _caps("ein gelbes Quadrat"),
            "mi": _caps("he tapawhā kōwhai"),
        },
    ]
    return _write(tmp_path / "xm", lines, {f"{k}.jpg": c for k, c in COLOURS.items()})


@pytest.fixture
def dirty_data(tmp_path) -> Path:
    lines = [
        {"image/key": "k1", "en": _caps("a red square"), "de": _caps("rot")},
        '{"image/key": "k2", "en": {"caption": ["cut sh',
        {"image/key": "k3", "en": _caps("a blue square"), "de": _caps()},
        {"image/key": "k4", "en": _caps("a yellow square"), "de": _caps("gelb")},
        {"image/key": "gone", "en": _caps("no file")},
        {"image/key": "broken", "en": _caps("not an image")},
    ]
    images = {
        "k1.jpg": COLOURS["k1"],
        "k3.jpg": COLOURS["k3"],
        "k4.jpg": COLOURS["k4"],
        "broken.jpg": b"\xff\xd8 this is not a jpeg",
    }
    return _write(tmp_path / "dirty", lines, images)


def test_evaluation_writes_reports_and_a_database_row(tiny_encoder, clean_data, tmp_path, pixglot_home):
    out = tmp_path / "report"
    result = evaluate_retrieval(clean_data, tiny_encoder, out_dir=out)
    run = result.run
    assert result.issues == [] and run.id is not None
    assert run.languages == ["de", "en", "mi"] and run.dataset == "xm3600" and run.protocol == "all"
    per = run.metrics["languages"]
    assert (per["en"]["n_images"], per["en"]["n_texts"]) == (4, 6)
    assert (per["mi"]["n_images"], per["mi"]["n_texts"]) == (2, 2)  # a language with fewer images
    for block in per.values():
        for direction in ("image_to_text", "text_to_image"):
            assert block[direction]["recall@10"] == 1.0  # at most 4 images and 6 captions
    expected_mean = np.mean([per[lang]["text_to_image"]["recall@1"] for lang in per])
    assert run.metrics["mean"]["text_to_image"]["recall@1"] == pytest.approx(expected_mean)

    table = pq.read_table(out / "results.parquet").to_pylist()
    assert len(table) == (3 + 1) * 2 * 3  # (languages + mean) x directions x k
    row = next(r for r in table if (r["language"], r["direction"], r["k"]) == ("en", "text_to_image", 1))
    assert row["recall"] == per["en"]["text_to_image"]["recall@1"] and row["protocol"] == "all"
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "big_vision" in markdown and "pessimistic" in markdown and "| mi | 2 | 2 |" in markdown
    html = (out / "report.html").read_text(encoding="utf-8")
    assert (
        html.count("<svg") == 2
        and "text → image" in html
        and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    for svg in re.findall(r"<svg.*?</svg>", html, re.S):
        chart = ET.fromstring(svg)  # well-formed, with one bar per language and k
        bars = [e for e in chart.iter("{http://www.w3.org/2000/svg}rect") if e.find("{*}title") is not None]
        assert len(bars) == 3 * 3

    with connect().connect() as conn:
        stored = conn.execute(select(eval_runs)).one()
    assert (stored.model, stored.dataset, stored.protocol) == (tiny_encoder.name, "xm3600", "all")
    assert stored.languages == ["de", "en", "mi"] and stored.code_revision
    assert stored.report_dir == str(out) and stored.metrics["mean"] == run.metrics["mean"]

    # Embeddings are cached: the second run encodes nothing and reproduces the metrics exactly.
    cache = sorted((pixglot_home / "cache" / "embeddings").rglob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cache]
    again = evaluate_retrieval(clean_data, tiny_encoder, out_dir=tmp_path / "again")
    assert sorted((pixglot_home / "cache" / "embeddings").rglob("*.npz")) == cache
    assert [p.stat().st_mtime_ns for p in cache] == stamps
    assert again.run.metrics["languages"] == per
    # The second report compares with the first run.
    assert f"<td>{run.id}</td>" in (tmp_path / "again" / "report.html").read_text(encoding="utf-8")


def test_bad_data_is_counted_and_reported_or_fatal_with_strict(tiny_encoder, dirty_data, tmp_path):
    result = evaluate_retrieval(
        dirty_data, tiny_encoder, languages=["en", "de", "xx"], out_dir=tmp_path / "r"
    )
    kinds = sorted(i.kind for i in result.issues)
    assert kinds == ["bad_image", "bad_line", "empty_captions", "missing_image", "unknown_language"]
    assert any(i.where == "captions.jsonl:2" for i in result.issues)
    assert any("'broken'" in i.where for i in result.issues)
    per = result.run.metrics["languages"]
    assert per["en"]["n_images"] == 3  # k1, k3, k4: the cut line, the missing and the broken image are out
    assert per["de"]["n_images"] == 2  # k3's German caption list is empty
    assert result.run.metrics["n_issues"] == 5
    assert "captions.jsonl:2" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")

    with pytest.raises(DataIssuesError, match="captions.jsonl:2"):
        evaluate_retrieval(dirty_data, tiny_encoder, strict=True, record=False, reports=False)
    assert len(list_runs()) == 1  # the strict failure stored nothing


def test_strict_also_fails_on_an_undecodable_image(tiny_encoder, tmp_path):
    root = _write(
        tmp_path / "d",
        [{"image/key": "a", "en": _caps("x")}, {"image/key": "b", "en": _caps("y")}],
        {"a.jpg": COLOURS["k1"], "b.jpg": b"garbage"},
    )
    with pytest.raises(DataIssuesError, match="'b'"):
        evaluate_retrieval(root, tiny_encoder, strict=True, record=False, reports=False)


def test_cli_strict_exits_non_zero_with_the_reason(tiny_encoder, dirty_data, tmp_path, capsys):
    models = Path(tmp_path / "models")
    model.save(tiny_encoder, models / "tiny")
    code = main(["eval", "xm3600", "--data", str(dirty_data), "--model", str(models / "tiny"), "--strict"])
    assert code == 2
    assert "strict" in capsys.readouterr().err


def test_protocols_compare_and_list_through_the_cli(tiny_encoder, clean_data, tmp_path, capsys):
    model_dir = tmp_path / "tiny"
    model.save(tiny_encoder, model_dir)
    base = ["eval", "xm3600", "--data", str(clean_data), "--model", str(model_dir)]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--protocol", "first", "--languages", "en,de", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "first (CLIP_benchmark)" in out and "all (big_vision" in out
    first, second = list_runs()
    assert second.protocol == "first" and second.languages == ["en", "de"]  # in the order asked for
    assert second.metrics["languages"]["en"]["n_texts"] == 4  # one caption per image

    assert main(["eval", "compare", str(first.id), str(second.id)]) == 0
    table = capsys.readouterr().out
    assert "protocol" in table and "| mi | " in table and "| mean | " in table
    en_row = next(line for line in table.splitlines() if line.startswith("| en |"))
    a = get_run(first.id).recall("en", "image_to_text", 1)
    b = get_run(second.id).recall("en", "image_to_text", 1)
    assert f"({100 * (b - a):+.1f})" in en_row

    assert main(["eval", "list"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("| xm3600 |") == 2

    assert main(["eval", "compare", str(first.id), "999"]) == 2
    assert "no evaluation run with id 999" in capsys.readouterr().err


def test_emoji36_runs_through_the_same_evaluator(tiny_encoder, tmp_path, capsys):
    from data import emoji36

    data = tmp_path / "emoji36"
    emoji36.build(data, languages=("en", "ja"), only=["🤝", "🫱🏻‍🫲🏿", "🐱", "👋", "👋🏽"])
    model_dir = tmp_path / "tiny"
    model.save(tiny_encoder, model_dir)
    assert main(["eval", "emoji36", "--data", str(data), "--model", str(model_dir), "--strict"]) == 0
    (run,) = list_runs()
    assert run.dataset == "emoji36/test" and run.languages == ["en", "ja"]
    assert run.metrics["languages"]["en"]["n_images"] == 2  # the two handshakes; the rest is train
    assert "emoji36/test" in capsys.readouterr().out


def test_one_word_search_on_emoji36_through_the_cli(tiny_encoder, tmp_path, capsys):
    from data import captions, emoji36

    data = tmp_path / "emoji36"
    emoji36.build(data, languages=("en", "ja"), only=["🐱", "🐈", "😺", "🇫🇷", "🇯🇵", "🏳"])
    model_dir = tmp_path / "tiny"
    model.save(tiny_encoder, model_dir)
    base = ["eval", "emoji36", "--data", str(data), "--model", str(model_dir), "--split", "all"]
    assert main([*base, "--protocol", "words", "--out", str(tmp_path / "words")]) == 0
    printed = capsys.readouterr().out
    assert "words (one-word search)" in printed and "| chance (mean) |" in printed
    (run,) = list_runs()
    words, pair_word, _ = captions.load(data).word_queries("en")
    en = run.metrics["languages"]["en"]
    assert run.protocol == "words" and en["n_texts"] == len(words) and en["n_images"] == 6
    assert (
        "cat" in words and sum(words[w] == "cat" for w in pair_word) == 3
    )  # every cat, the one named "cat" too
    # A random ranking of six pictures finds one of a word's pictures in the top 5 at least 5/6 of the time.
    assert 5 / 6 <= run.metrics["mean"]["chance"]["text_to_image"]["recall@5"] < 1
    for direction in ("text_to_image", "image_to_text"):
        assert 0 <= run.recall("mean", direction, 1) <= run.recall("mean", direction, 5) <= 1


def test_int8_evaluation_is_its_own_run_with_its_own_embeddings(
    tiny_encoder, clean_data, tmp_path, pixglot_home
):
    # Quantisation keeps the weights' fingerprint, so the embedding cache must still tell them apart.
    model_dir = tmp_path / "tiny"
    model.save(tiny_encoder, model_dir)
    base = ["eval", "xm3600", "--data", str(clean_data), "--model", str(model_dir)]
    assert main([*base, "--out", str(tmp_path / "fp32")]) == 0
    cached = set((pixglot_home / "cache" / "embeddings").iterdir())
    assert main([*base, "--quantize", "int8", "--out", str(tmp_path / "int8")]) == 0
    assert len(set((pixglot_home / "cache" / "embeddings").iterdir()) - cached) == 1
    fp32, int8 = list_runs()
    assert int8.model == f"{fp32.model} (int8)"
    assert int8.metrics["languages"]["en"]["n_texts"] == fp32.metrics["languages"]["en"]["n_texts"]
