"""The search API and `pixglot search` on a small collection indexed with the real tiny model.

The tiny model is random, so these tests check the arithmetic the search promises (scores are
cosine similarities of the stored vectors with the query vector, negatives subtract, filters and
pages partition the same ranking), not what a trained model would find."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import indexer
import model
from app.query import SearchRequest, run_search
from ground.errors import InputError, PixglotError
from indexer import Filters, IndexOptions, index_paths, parse_query, searching, vector_index
from indexer.samples import SampleExif, write_image, write_images
from pixglot.cli import main

FAST = IndexOptions(progress=False, workers=0, commit_every=16)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def search_home(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: model.Encoder) -> Path:
    """One indexed collection for the read-only tests of this module: 14 + 6 plain images, 4 with EXIF."""
    home = tmp_path_factory.mktemp("search-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIXGLOT_HOME", str(home))
        model.save(tiny_encoder, home / "models" / "tiny")
        folder = home / "photos"
        write_images(folder, 14)
        write_images(folder / "trip", 6, first_seed=100)
        shots = [(date(2019, 5, 1), "Canon", "Canon EOS 5D"), (date(2020, 1, 2), "NIKON", "NIKON D750")] * 2
        for i, (day, make, camera) in enumerate(shots):
            taken = datetime.combine(day, datetime.min.time()).replace(hour=9 + i)
            write_image(folder / "exif" / f"e{i}.jpg", seed=200 + i, exif=SampleExif(taken, make, camera))
        index_paths([folder], "c", "tiny", options=FAST)
    return home


@pytest.fixture
def collection(search_home: Path, monkeypatch: pytest.MonkeyPatch) -> indexer.Collection:
    monkeypatch.setenv("PIXGLOT_HOME", str(search_home))
    return indexer.open_collection("c")


def exact_ranking(collection: indexer.Collection, query: np.ndarray) -> list[tuple[int, float]]:
    """Every image's score against `query`, best first (ties by id), straight from the shards."""
    with collection.engine.connect() as conn:
        ids = collection.live_ids(conn)
    vectors = collection.read_vectors(ids)
    scores = [(int(i), float(vectors[int(i)] @ query)) for i in ids]
    return sorted(scores, key=lambda pair: (-pair[1], pair[0]))


def test_image_query_finds_the_image_itself_first(collection: indexer.Collection) -> None:
    target = collection.image_by_path(Path(collection.search("x", k=30)[7].path))
    hits = collection.search(image=target.path, k=3)
    assert hits[0].image_id == target.id
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[1].score < hits[0].score


def test_text_queries_in_any_script_rank_by_cosine_similarity(collection: indexer.Collection) -> None:
    encoder = collection.encoder()
    for text in ["a dog on the beach", "кошка на диване", "海辺の犬", "كلب على الشاطئ"]:
        expected = exact_ranking(collection, encoder.encode_texts([text])[0])
        hits = collection.search(text, k=8)
        assert [h.image_id for h in hits] == [i for i, _ in expected[:8]]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected[:8]], atol=1e-5)


def test_negative_terms_subtract_their_weighted_similarity(collection: indexer.Collection) -> None:
    encoder = collection.encoder()
    positive, negative = encoder.encode_texts(["beach", "people"])
    weight = 2.0
    expected = exact_ranking(collection, positive - weight * negative)
    hits = collection.search(f"beach -people:{weight}", k=24)
    assert [h.image_id for h in hits] == [i for i, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)
    # The images that look most like "people" move down the ranking.
    plain = [h.image_id for h in collection.search("beach", k=24)]
    people_like = [i for i, _ in exact_ranking(collection, negative)[:4]]
    with_negative = [h.image_id for h in hits]
    assert sum(with_negative.index(i) for i in people_like) > sum(plain.index(i) for i in people_like)


def test_text_and_image_combine(collection: indexer.Collection) -> None:
    encoder = collection.encoder()
    some = collection.search("x", k=24)[5]
    text = encoder.encode_texts(["sunset"])[0]
    image = collection.read_vectors([some.image_id])[some.image_id]
    combined = 0.7 * text + 0.3 * image
    expected = exact_ranking(collection, combined / np.linalg.norm(combined))
    hits = collection.search("sunset", some.path, k=5, image_weight=0.3)
    assert [h.image_id for h in hits] == [i for i, _ in expected[:5]]


def test_query_parsing() -> None:
    assert parse_query("beach -people") == ("beach", (("people", 0.5),))
    assert parse_query('beach -people:0.8 -"red car":0.3 sunset') == (
        "beach sunset",
        (("people", 0.8), ("red car", 0.3)),
    )
    assert parse_query("t-shirt -5 degrees") == ("t-shirt -5 degrees", ())
    assert parse_query("кошка -собака") == ("кошка", (("собака", 0.5),))
    assert parse_query('"exact phrase" -x:abc') == ("exact phrase", (("x:abc", 0.5),))
    with pytest.raises(InputError):
        parse_query("beach -people:99")


@pytest.mark.parametrize("weight", ["-0.5", "-1e-9", "10.5", "nan", "inf", "-inf"])
def test_a_negative_term_weight_outside_0_to_10_is_refused(weight: str) -> None:
    with pytest.raises(InputError, match=f"weight {weight} is not between 0 and 10"):
        parse_query(f"beach -people:{weight}")


@pytest.mark.parametrize("weight", ["0", "10", "0.25"])
def test_negative_term_weights_from_0_to_10_are_taken(weight: str) -> None:
    assert parse_query(f"beach -people:{weight}") == ("beach", (("people", float(weight)),))


# Queries built from what the syntax gives meaning to, and any other character.
QUERY_PIECES = ["-", '"', ":", " ", "0.5", "-1", "nan", "inf", "1e9", "beach", "кошка", "قطة", "🐱", "\u0897"]
queries = st.lists(st.sampled_from(QUERY_PIECES) | st.text(max_size=3), max_size=8).map("".join)


@given(queries)
def test_any_query_parses_to_terms_with_weights_from_0_to_10_or_is_refused(text: str) -> None:
    try:
        parsed = parse_query(text)
    except InputError as err:
        assert "\n" not in str(err) and "is not between 0 and 10" in str(err)
        return
    assert parsed.text == parsed.text.strip()
    for term, weight in parsed.negatives:
        assert term.strip() and 0 <= weight <= 10


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries)
def test_any_query_is_hits_or_one_line_error_in_the_api_the_cli_and_the_page(
    collection: indexer.Collection, capsys: pytest.CaptureFixture, text: str
) -> None:
    try:
        hits = [h.image_id for h in collection.search(text, k=3)]
    except PixglotError as err:
        hits, message = None, str(err)
        assert message and "\n" not in message
    else:
        assert 1 <= len(hits) <= 3
    # The page asks through run_search with the same words, and gets the same answer.
    try:
        page = [h.image_id for h in run_search(collection, SearchRequest("c", text=text), 0, 3)]
    except PixglotError as err:
        assert hits is None and str(err) == message
    else:
        assert page == hits
    if "\0" in text:
        return  # a command line cannot hold a NUL
    code = main(["search", "-c", "c", "-k", "3", "-f", "--", text])
    out, err = capsys.readouterr()
    if hits is None:
        assert code == 2 and err.count("\n") == 1 and err.startswith("pixglot: error: ")
    else:
        assert code == 0 and len(out.splitlines()) == len(hits)


def test_pages_partition_the_ranking(collection: indexer.Collection) -> None:
    full = [h.image_id for h in collection.search("mountains", k=24)]
    pages = [collection.search("mountains", k=5, offset=o) for o in range(0, 30, 5)]
    assert [h.image_id for page in pages for h in page] == full
    assert [len(page) for page in pages] == [5, 5, 5, 5, 4, 0]


def test_filters(collection: indexer.Collection, search_home: Path) -> None:
    trip = collection.search(
        "x", k=10, filters=Filters(path_prefix=str(search_home / "photos" / "trip") + "/")
    )
    assert len(trip) == 6 and all("/photos/trip/" in h.path for h in trip)
    canon = collection.search("x", k=10, filters=Filters(camera="canon"))
    assert len(canon) == 2 and all(h.metadata["camera"] == "Canon EOS 5D" for h in canon)
    in_2020 = collection.search(
        "x", k=10, filters=Filters(date_from=date(2020, 1, 1), date_to=date(2020, 1, 2))
    )
    assert sorted(Path(h.path).name for h in in_2020) == ["e1.jpg", "e3.jpg"]
    assert collection.search("x", k=10, filters=Filters(date_to=date(2018, 12, 31))) == []
    # Filtering by path is a string prefix; LIKE wildcards in it are literal.
    assert (
        collection.search("x", k=10, filters=Filters(path_prefix=str(search_home / "photos" / "tri"))) == trip
    )
    assert collection.search("x", k=10, filters=Filters(path_prefix=str(search_home / "photos" / "t%"))) == []


def test_filtered_pages_agree_between_exact_and_overfetching_search(
    collection: indexer.Collection, monkeypatch: pytest.MonkeyPatch, search_home: Path
) -> None:
    # The "not in trip/" images via a prefix that selects 14 + 4 of 24 is broad enough for
    # over-fetching once the exact-scoring limits are off; both paths must give the same pages.
    flt = Filters(path_prefix=str(search_home / "photos" / "img"))
    exact = [collection.search("ocean", k=4, offset=o, filters=flt) for o in (0, 4, 8, 12)]
    monkeypatch.setattr(searching, "EXACT_FILTER_LIMIT", 0)
    monkeypatch.setattr(searching, "EXACT_FILTER_SHARE", 0.0)
    fetched = [collection.search("ocean", k=4, offset=o, filters=flt) for o in (0, 4, 8, 12)]
    assert [[h.image_id for h in p] for p in fetched] == [[h.image_id for h in p] for p in exact]
    assert sum(len(p) for p in exact) == 14
    np.testing.assert_allclose(
        [h.score for p in fetched for h in p], [h.score for p in exact for h in p], atol=1e-5
    )


def test_score_threshold(collection: indexer.Collection) -> None:
    scores = [h.score for h in collection.search("flowers", k=24)]
    threshold = float(np.median(scores))
    kept = collection.search("flowers", k=24, min_score=threshold)
    assert len(kept) == sum(s >= threshold for s in scores)
    assert all(h.score >= threshold for h in kept)
    assert collection.search("flowers", k=5, offset=len(kept), min_score=threshold) == []


def test_bad_queries_are_clear_errors(collection: indexer.Collection, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty query"):
        collection.search("-people")
    with pytest.raises(InputError, match="k=0"):
        collection.search("x", k=0)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(indexer.collection.FileFormatError, match="bad.jpg"):
        collection.search(image=tmp_path / "bad.jpg")


def test_ivf_layout_searches_and_tracks_deletions(
    pixglot_home: Path, tiny_encoder: model.Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This test writes, so it uses its own PIXGLOT_HOME (the autouse fixture's), not search_home.
    model.save(tiny_encoder, pixglot_home / "models" / "tiny")
    monkeypatch.setattr(vector_index, "FLAT_LIMIT", 20)
    folder = tmp_path / "many"
    write_images(folder, 40, size=(32, 32))
    index_paths([folder], "big", "tiny", options=IndexOptions(progress=False, workers=0, commit_every=32))
    big = indexer.open_collection("big")
    state = big.vector_index().state
    assert state.layout.kind == "ivf" and state.live == 40
    probe = folder / "img00017.png"
    assert big.search(image=probe, k=1)[0].path == str(probe)
    for path in sorted(folder.iterdir())[:5]:
        path.unlink()
    index_paths([folder], "big", options=IndexOptions(progress=False, workers=0, prune=True))
    state = big.vector_index().state
    assert (state.live, state.dead) == (35, 5)  # IVF entries stay until a rebuild; searches skip them
    assert len(big.search("x", k=40)) == 35
    for path in sorted(folder.iterdir())[:5]:
        path.unlink()
    index_paths([folder], "big", options=IndexOptions(progress=False, workers=0, prune=True))
    state = big.vector_index().state
    assert (state.live, state.dead) == (30, 0)  # over a fifth dead: rebuilt


def test_cli_search_outputs(collection: indexer.Collection, capsys: pytest.CaptureFixture) -> None:
    # `collection` points PIXGLOT_HOME at the module's home, so the CLI finds the same database.
    assert main(["search", "a cat", "--collection", "c", "-f", "--k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(collection.is_indexed(line) for line in lines)
    assert lines == [h.path for h in collection.search("a cat", k=3)]
    assert main(["search", "a cat", "--collection", "c", "--json", "--k", "2", "--offset", "1"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["path"] for h in hits] == lines[1:3] and {"score", "image_id", "camera"} <= set(hits[0])
    assert main(["search", "a cat", "--collection", "c", "--k", "2"]) == 0
    ranked = capsys.readouterr().out.splitlines()
    assert ranked[0].split()[0] == "1" and ranked[0].endswith(lines[0])
    assert main(["search", "a cat", "--collection", "nope"]) == 2
    assert "no collection named 'nope'" in capsys.readouterr().err


WARM_PROBE = """
import sys
import numba
import indexer


def compiled() -> int:
    # Signatures compiled, or loaded from numba's cache, by this process so far.
    return sum(
        len(value.signatures)
        for name, module in list(sys.modules.items())
        if name.startswith("rendering")
        for value in vars(module).values()
        if isinstance(value, numba.core.registry.CPUDispatcher)
    )


collection = indexer.open_collection("c")
indexer.warm_up(collection)
warmed = compiled()
for query in sys.argv[1:]:
    collection.search(query, k=3)
print(warmed, compiled())
"""


def test_after_a_warm_up_no_query_compiles_anything(search_home: Path) -> None:
    queries = [
        "猫",
        "кошка",
        "قطة على الأريكة في الصباح مع القهوة",
        "x" * 400,
        "🐱🐶 שלום 123",
        "बिल्ली -कुत्ता",
    ]
    # The session's numba cache (where this process's rendering loops are cached; numba puts a loop
    # under NUMBA_CACHE_DIR in the same sub-folder): the probe loads it rather than compiling again.
    from rendering.kernels import text_facts

    session_cache = Path(text_facts._cache._cache_path).parent
    env = {**os.environ, "PIXGLOT_HOME": str(search_home), "NUMBA_CACHE_DIR": str(session_cache)}
    done = subprocess.run(
        [sys.executable, "-c", WARM_PROBE, *queries],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    warmed, after = map(int, done.stdout.split())
    assert warmed > 0 and after == warmed
