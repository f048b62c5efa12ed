"""The web page's logic, driven through Streamlit's AppTest on a real tiny collection and model."""

from __future__ import annotations

import io
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from app_support import N_IMAGES, build_library, make_images
from caption_support import write_dataset
from PIL import Image
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

import indexer
import model
from app import query
from evaluation.metrics import mean_over_languages, retrieval_metrics
from evaluation.runs import code_revision, record_run
from ground import db
from ground.errors import InputError
from ground.home import models_dir
from indexer.collection import LOCK_FILE, Collection
from indexer.locking import exclusive

MAIN = Path(__file__).resolve().parent.parent / "app" / "main.py"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    home = tmp_path_factory.mktemp("app-home")
    return home, build_library(home, tmp_path_factory.mktemp("app-images"))


@pytest.fixture
def shared_home(library, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Tests that only read the shared collection run in its PIXGLOT_HOME."""
    home, paths = library
    monkeypatch.setenv("PIXGLOT_HOME", str(home))
    return paths


def page() -> AppTest:
    at = AppTest.from_file(str(MAIN), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def search(at: AppTest, words: str) -> AppTest:
    at.text_input(key="text").input(words).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def result_names(at: AppTest) -> list[str]:
    """File names under the result grid's images, in page order."""
    grid = at.get_by_key("results")
    cards = [m.value for m in grid.markdown if m.value.startswith('<div class="pg-caption"><b>')]
    return [card.split('dir="auto">')[1].split("</bdi>")[0] for card in cards]


def result_images(at: AppTest) -> int:
    return len(at.get_by_key("results").image)


def messages(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in (at.info, at.error, at.warning) for e in kind)


def test_search_in_arabic_and_japanese_shows_the_collections_images(shared_home):
    at = page()
    names = {p.name for p in shared_home}
    for words in ("قطة", "猫"):
        search(at, words)
        shown = result_names(at)
        assert len(shown) == N_IMAGES == result_images(at)
        assert set(shown) == names
        expected = indexer.search("t", words, k=N_IMAGES)
        assert shown == [os.path.basename(h.path) for h in expected]
    assert not at.error


def test_results_come_page_by_page(shared_home, monkeypatch):
    monkeypatch.setattr(query, "PAGE_SIZE", 8)
    at = search(page(), "кошка")
    assert result_images(at) == 8
    at.button(key="load_more").click().run()
    assert result_images(at) == 16
    at.button(key="load_more").click().run()
    names = result_names(at)
    assert len(names) == len(set(names)) == N_IMAGES
    assert not [b for b in at.button if b.key == "load_more"]  # everything is shown


def test_more_like_this_finds_the_image_itself_first(shared_home):
    at = search(page(), "dog")
    target = result_names(at)[5]
    image_id = indexer.open_collection("t").image_by_path(shared_home[0].parent / target).id
    at.button(key=f"like-{image_id}").click().run()
    assert at.text_input(key="text").value == ""
    assert "Searching with the image" in " ".join(m.value for m in at.markdown)
    assert result_names(at)[0] == target


def test_details_of_a_result_show_its_file_and_metadata(shared_home):
    at = search(page(), "tree")
    name = result_names(at)[2]
    row = indexer.open_collection("t").image_by_path(shared_home[0].parent / name)
    at.button(key=f"details-{row.id}").click().run()
    panel = " ".join(m.value for m in at.get_by_key("details").markdown)
    assert name in panel and str(shared_home[0].parent) in panel
    assert f"{row.width} × {row.height} px" in panel
    assert len(at.get_by_key("details").image) == 1
    at.button(key="details-close").click().run()
    with pytest.raises(KeyError):
        at.get_by_key("details")


def test_uploaded_image_searches_alone_and_with_text(shared_home):
    at = page()
    wanted = shared_home[3]
    at.file_uploader(key="upload").set_value((wanted.name, wanted.read_bytes(), "image/png")).run()
    assert not at.error
    assert result_names(at)[0] == wanted.name
    search(at, "bird")
    assert at.slider(key="image_weight").value == 0.5
    assert result_images(at) == N_IMAGES


def test_an_upload_that_is_not_an_image_gets_a_clear_error(shared_home):
    at = page()
    at.file_uploader(key="upload").set_value(("notes.png", b"this is text", "image/png")).run()
    assert not at.exception
    assert any("notes.png" in e.value and "not an image" in e.value for e in at.error)


def test_what_the_model_reads_shows_the_query_and_negative_terms(shared_home):
    at = search(page(), "شاطئ -people")
    assert not [m for m in at.markdown if "query: شاطئ" in m.value]  # shown on demand only
    at.toggle(key="show_rendering").set_value(True).run()
    captions = [m.value for m in at.markdown if "pg-caption" in m.value and "<b>" not in m.value]
    assert any("query: شاطئ" in c for c in captions)
    assert any("not (weight 0.5): people" in c for c in captions)


def test_a_filter_matching_nothing_shows_the_no_results_state(shared_home):
    at = page()
    at.text_input(key="folder").input("/nowhere/at/all/").run()
    search(at, "cat")
    assert "No images match" in messages(at)
    with pytest.raises(KeyError):
        at.get_by_key("results")


def test_folder_filter_keeps_only_that_folder(shared_home):
    at = page()
    at.text_input(key="folder").input(str(shared_home[0].parent) + "/").run()
    assert result_names(search(at, "cat")) and not at.error


def test_no_collections_yet(pixglot_home):
    at = page()
    assert "No collections yet" in messages(at)


def test_empty_collection_and_one_being_built(pixglot_home):
    encoder = model.create("tiny-test")
    empty = Collection.create("empty", "tiny", encoder.fingerprint, encoder.dim)
    assert "has no images yet" in messages(page())
    with exclusive(empty.folder / LOCK_FILE, "test writer"):
        assert "is being built" in messages(page())


def test_missing_model_is_a_clear_state(tmp_path, pixglot_home):
    build_library(pixglot_home, tmp_path / "images", count=3)
    shutil.rmtree(models_dir() / "tiny")
    at = page()
    assert any("model could not be loaded" in e.value and "'tiny'" in e.value for e in at.error)
    assert not at.exception
    with pytest.raises(KeyError):
        at.text_input(key="text")


def test_dataset_pictures_show_their_names_and_the_model_says_what_it_knows(tmp_path, pixglot_home):
    captions = [
        {"image/key": "u1f431", "en": {"caption": ["cat face"]}, "ru": {"caption": ["морда кошки", "кошка"]}},
        {"image/key": "u1f436", "en": {"caption": ["dog face"]}, "ru": {"caption": ["морда собаки"]}},
        {"image/key": "u1f98a", "en": {"caption": ["fox"]}},
    ]
    lines = [json.dumps(record, ensure_ascii=False) for record in captions]
    root = write_dataset(tmp_path / "emoji", lines, ["u1f431.png", "u1f436.png", "u1f98a.png"])
    make_images(tmp_path / "mine", 1)
    encoder = model.create("tiny-test")
    model.save(encoder, models_dir() / "tiny")
    options = indexer.IndexOptions(workers=0, progress=False)
    indexer.index_paths([root / "images", tmp_path / "mine"], "emoji", "tiny", options=options)
    at = page()
    assert encoder.description in [c.value for c in at.sidebar.caption]
    search(at, "кошка")
    assert sorted(result_names(at)) == ["cat face", "dog face", "fox", "img00.png"]
    in_russian = [m.value for m in at.get_by_key("results").markdown if '">ru: <bdi' in m.value]
    assert sorted(line.split('dir="auto">')[1].split("</bdi>")[0] for line in in_russian) == [
        "морда кошки",
        "морда собаки",
    ]
    search(at, "fox")  # English: the names already shown
    assert not [m for m in at.get_by_key("results").markdown if "<bdi" in m.value and '">ru: ' in m.value]


def _metrics(seed: int, languages: tuple[str, ...]) -> dict:
    rng = np.random.default_rng(seed)
    per_language = {}
    for language in languages:
        images = rng.normal(size=(12, 8)).astype(np.float32)
        texts = images + rng.normal(scale=1.5, size=images.shape).astype(np.float32)
        per_language[language] = retrieval_metrics(images, texts, np.arange(12))
    return {"mean": mean_over_languages(per_language), "languages": per_language, "tie_rule": "pessimistic"}


def _record(seed: int, model_name: str, languages: tuple[str, ...]) -> int:
    return record_run(
        model=model_name,
        dataset="emoji36",
        protocol="all",
        languages=list(languages),
        metrics=_metrics(seed, languages),
        created_at=datetime.now(UTC),
        code_revision=code_revision(),
        report_dir=None,
        engine=db.connect(),
    )


def test_evaluation_runs_listed_charted_and_compared(pixglot_home):
    assert "No evaluation runs yet" in messages(page())
    first = _record(1, "tiny-a", ("ar", "ja", "en"))
    second = _record(2, "tiny-b", ("ar", "ja", "en", "fa"))
    at = page()
    runs = at.dataframe[0].value
    assert list(runs["run"]) == [second, first]
    assert at.selectbox(key="eval_run").value == second
    assert (at.selectbox(key="eval_a").value, at.selectbox(key="eval_b").value) == (first, second)
    assert len(at.get("vega_lite_chart")) == 2
    table = at.dataframe[1].value
    assert list(table["language"]) == ["ar", "en", "fa", "ja", "mean"]
    fa = table[table["language"] == "fa"].iloc[0]
    assert fa[f"A #{first}"] is None or np.isnan(fa[f"A #{first}"])  # run A has no Persian
    at.radio(key="eval_direction").set_value("image_to_text").run()
    assert not at.exception and not at.error


def test_an_unexpected_failure_is_one_line_and_the_other_tab_still_works(tmp_path, monkeypatch):
    damaged = f"sqlite:///{tmp_path / 'damaged.db'}"
    with db.connect(damaged).begin() as conn:
        conn.execute(text("DROP TABLE eval_runs"))
    monkeypatch.setattr("sys.argv", ["main.py", "--db", damaged])
    at = page()
    assert any("Something went wrong while showing the evaluation runs" in e.value for e in at.error)
    assert not at.exception
    assert "No collections yet" in messages(at)


def test_upload_limits_and_the_decompression_bomb_guard(monkeypatch):
    with pytest.raises(InputError, match="over the 20 MiB limit"):
        query.read_upload("huge.png", b"\0" * (query.MAX_UPLOAD_BYTES + 1))
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "red").save(buffer, "PNG")
    assert query.read_upload("ok.png", buffer.getvalue()).pixels.size == (200, 200)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 200x200 is now over twice the limit
    with pytest.raises(InputError, match="bomb.png: too large to decode safely"):
        query.read_upload("bomb.png", buffer.getvalue())
