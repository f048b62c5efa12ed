"""Indexing runs on SQLite with the real tiny model: incremental reruns, reuse of vectors, pruning,
bad files, model checks, re-indexing, rebuilding, orphans and serving only indexed files."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from crash_support import kill_group, living_members
from PIL import Image

import indexer
import model
from ground.errors import FileFormatError, PixglotWarning
from indexer import Collection, IndexOptions, ModelMismatch, decode, index_paths, ingest
from indexer.samples import SampleExif, sample_image, write_image, write_images
from indexer.scan import scan
from indexer.vector_index import INDEX_JSON

FAST = IndexOptions(progress=False, workers=0, commit_every=8)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_images(folder, 12)
    write_images(folder / "trip", 6, first_seed=100)
    return folder


def stored_vector(collection: Collection, image_id: int) -> np.ndarray:
    return collection.read_vectors([image_id])[image_id]


def test_first_run_indexes_every_image_and_rerun_skips_unchanged(tiny: str, photos: Path) -> None:
    first = index_paths([photos], "c", tiny, options=FAST)
    assert (first.scanned, first.added, first.encoded, first.failed) == (18, 18, 18, 0)
    again = index_paths([photos], "c", options=FAST)
    assert (again.scanned, again.unchanged, again.added, again.encoded) == (18, 18, 0, 0)
    collection = indexer.open_collection("c")
    assert collection.count() == 18
    assert collection.vector_index().state.live == 18


def generation(collection: Collection) -> int:
    with collection.engine.connect() as conn:
        return collection.generation(conn)


def test_changed_files_are_reencoded_and_touched_files_are_not(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    edited = [photos / "img00001.png", photos / "img00003.png"]
    touched = [photos / "img00002.jpg", photos / "img00004.jpg"]
    old = [collection.image_by_path(path) for path in edited]
    for seed, path in enumerate(edited, start=990):
        write_image(path, seed=seed)
    for path in touched:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    before = generation(collection)
    # One image per commit: the counts add up over several transactions.
    report = index_paths([photos], "c", options=IndexOptions(progress=False, workers=0, commit_every=1))
    assert (report.updated, report.touched, report.encoded, report.unchanged) == (2, 2, 2, 14)
    assert generation(collection) > before  # the saved vector index knows it is behind
    for path, was in zip(edited, old, strict=True):
        new = collection.image_by_path(path)
        assert new.id != was.id and new.content_hash != was.content_hash
        assert collection.search(image=path, k=1)[0].image_id == new.id
    assert collection.count() == 18
    # A touched file's row takes its new size and time, so the next run leaves it alone, and
    # changes no vector: the index has nothing to catch up with.
    for path in touched:
        row = collection.image_by_path(path)
        assert (row.size, row.mtime_ns) == (path.stat().st_size, path.stat().st_mtime_ns)
    for path in touched:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    before = generation(collection)
    assert index_paths([photos], "c", options=FAST).touched == 2
    assert generation(collection) == before
    again = index_paths([photos], "c", options=FAST)
    assert (again.unchanged, again.touched, again.encoded) == (18, 0, 0)


def test_renamed_file_reuses_its_vector(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    before = collection.image_by_path(photos / "img00003.png")
    os.rename(photos / "img00003.png", photos / "trip" / "renamed.png")
    report = index_paths([photos], "c", options=IndexOptions(progress=False, workers=0, prune=True))
    assert (report.added, report.reused, report.encoded, report.pruned) == (1, 1, 0, 1)
    after = collection.image_by_path(photos / "trip" / "renamed.png")
    assert after.content_hash == before.content_hash
    np.testing.assert_array_equal(stored_vector(collection, after.id), stored_vector(collection, before.id))
    assert collection.image_by_path(photos / "img00003.png") is None


def test_duplicate_content_reuses_one_vector_within_and_across_runs(tiny: str, tmp_path: Path) -> None:
    folder = tmp_path / "dups"
    write_images(folder, 5)
    shutil.copy(folder / "img00000.jpg", folder / "same-run-copy.jpg")
    first = index_paths([folder], "c", tiny, options=FAST)
    assert (first.added, first.encoded, first.reused) == (6, 5, 1)
    shutil.copy(folder / "img00001.png", folder / "later-copy.png")
    second = index_paths([folder], "c", options=FAST)
    assert (second.added, second.encoded, second.reused) == (1, 0, 1)
    collection = indexer.open_collection("c")
    hits = collection.search(image=folder / "img00001.png", k=2)
    assert {Path(h.path).name for h in hits} == {"img00001.png", "later-copy.png"}
    assert all(h.score == pytest.approx(1.0, abs=1e-4) for h in hits)


def test_a_copy_committed_earlier_in_the_same_run_lends_its_vector(tiny: str, tmp_path: Path) -> None:
    folder = tmp_path / "dups"
    write_images(folder, 4)
    shutil.copy(folder / "img00000.jpg", folder / "z-copy-a.jpg")
    shutil.copy(folder / "img00001.png", folder / "z-copy-b.png")
    # One image per commit: the originals are in the shards before their copies come up.
    report = index_paths([folder], "c", tiny, options=IndexOptions(progress=False, workers=0, commit_every=1))
    assert (report.added, report.encoded, report.reused, report.failed) == (6, 4, 2, 0)
    collection = indexer.open_collection("c")
    for original, copy in (("img00000.jpg", "z-copy-a.jpg"), ("img00001.png", "z-copy-b.png")):
        a, b = collection.image_by_path(folder / original), collection.image_by_path(folder / copy)
        np.testing.assert_array_equal(stored_vector(collection, a.id), stored_vector(collection, b.id))


def test_rows_take_ids_in_the_order_the_files_were_found(tiny: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 6)
    originals = sorted(folder.iterdir())
    # Copies between the originals: a copy's vector is ready at once, an original's only once its
    # batch is encoded, so the rows of one commit become ready out of the files' order.
    for source, after in ((originals[0], originals[2]), (originals[1], originals[4])):
        shutil.copy(source, folder / f"{after.stem}-copy{source.suffix}")
    report = index_paths([folder], "c", tiny, options=FAST)
    assert (report.added, report.encoded, report.reused) == (8, 6, 2)
    collection = indexer.open_collection("c")
    ids = [collection.image_by_path(entry.path).id for entry in scan([str(folder)])]
    assert len(ids) == 8 and ids == sorted(ids) and len(set(ids)) == 8


def test_prune_drops_vanished_images_only_when_asked(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    gone = collection.image_by_path(photos / "trip" / "img00100.jpg")
    (photos / "trip" / "img00100.jpg").unlink()
    kept = index_paths([photos], "c", options=FAST)
    assert kept.pruned == 0 and collection.count() == 18
    pruned = index_paths([photos], "c", options=IndexOptions(progress=False, workers=0, prune=True))
    assert pruned.pruned == 1 and collection.count() == 17
    assert collection.vector_index().state.live == 17
    hits = collection.search("anything", k=50)
    assert gone.id not in {h.image_id for h in hits} and len(hits) == 17


def test_prune_is_limited_to_the_folders_given(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    report = index_paths([photos / "trip"], "c", options=IndexOptions(progress=False, workers=0, prune=True))
    assert report.pruned == 0
    assert indexer.open_collection("c").count() == 18


def test_bad_files_are_listed_and_the_run_goes_on(
    tiny: str, photos: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    good = photos / "img00000.jpg"
    (photos / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    (photos / "not-an-image.png").write_bytes(b"hello, I am text")
    (photos / "empty.webp").write_bytes(b"")
    write_image(photos / "huge.png", seed=7, size=(80, 80))
    # Pillow's decompression-bomb guard refuses over twice MAX_IMAGE_PIXELS: shrink it so that an
    # 80x80 image counts as a bomb here (workers=0 decodes in this process, so the patch applies).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    report = index_paths([photos], "c", tiny, options=FAST)
    failed = dict(report.failures)
    assert set(failed) == {
        str(photos / n) for n in ("truncated.jpg", "not-an-image.png", "empty.webp", "huge.png")
    }
    assert "too large" in failed[str(photos / "huge.png")]
    assert "not a readable image" in failed[str(photos / "not-an-image.png")]
    assert report.added == 18
    collection = indexer.open_collection("c")
    assert {f.path for f in collection.failures()} == set(failed)
    # The CLI report lists them too; fixing a file clears its entry on the next run.
    assert indexer_cli(["index", "--report", "--collection", "c"]) == 0
    assert "truncated.jpg" in capsys.readouterr().out
    shutil.copy(good, photos / "truncated.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)
    index_paths([photos], "c", options=FAST)
    assert {Path(f.path).name for f in collection.failures()} == {"not-an-image.png", "empty.webp"}


def test_a_file_whose_header_reads_but_whose_pixels_do_not_fails_with_its_copies(
    tiny: str, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    write_images(folder, 4, suffixes=(".jpg",))
    whole = (folder / "img00000.jpg").read_bytes()
    # Cut in half, a JPEG still has its header (so it is hashed and planned for the model) but not
    # all of its pixels. Its identical copy comes second and would borrow its vector; a good image
    # follows in the same commit.
    for name in ("cut-a.jpg", "cut-b.jpg"):
        (folder / name).write_bytes(whole[: len(whole) // 2])
    not_image = folder / "note.jpg"
    not_image.write_bytes(b"hello, I am text")
    report = index_paths([folder], "c", tiny, options=FAST)
    assert (report.added, report.encoded, report.failed) == (4, 4, 3)
    collection = indexer.open_collection("c")
    failures = {Path(f.path).name: f for f in collection.failures()}
    assert set(failures) == {"cut-a.jpg", "cut-b.jpg", "note.jpg"}
    for name in ("cut-a.jpg", "cut-b.jpg"):
        assert "image file is truncated" in failures[name].reason
    # The record says what the file was when it failed, whether it failed at its header or its pixels.
    for name, failure in failures.items():
        stat = (folder / name).stat()
        assert (failure.size, failure.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert dict(report.failures) == {str(folder / n): f.reason for n, f in failures.items()}


def test_the_model_sees_batches_of_the_batch_size(
    tiny: str, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = []
    encode = model.Encoder.encode_images_tolerant

    def recorded(self: model.Encoder, images: list, batch_size: int | None = None) -> object:
        sizes.append(len(images))
        return encode(self, images, batch_size)

    monkeypatch.setattr(model.Encoder, "encode_images_tolerant", recorded)
    index_paths([photos], "default", tiny, options=IndexOptions(progress=False, workers=0))
    assert sizes == [16, 2]  # 16 without a batch size
    sizes.clear()
    index_paths([photos], "fives", tiny, options=IndexOptions(progress=False, workers=0, batch_size=5))
    assert sizes == [5, 5, 5, 3]


def test_the_timings_say_where_the_run_went(tiny: str, photos: Path) -> None:
    report = index_paths([photos], "c", tiny, options=FAST)
    assert all(seconds > 0 for seconds in report.timings.values()), report.timings
    # With workers=0 every stage runs in this process, one after another.
    assert sum(report.timings.values()) <= report.seconds


def test_a_run_commits_every_commit_every_images_and_every_8_times_that_touched_files(
    tiny: str, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a kill can lose is what was not committed yet: at most commit_every encoded images, or
    # 8 times that many rows whose only change is their mtime.
    paths = sorted(p for p in photos.rglob("*") if p.is_file())
    committed: list[tuple[int, int]] = []  # (rows, rows with their new mtime) after each commit
    commit = ingest.IngestRun.commit

    def recorded(self: ingest.IngestRun) -> None:
        commit(self)
        rows = {p: self.collection.image_by_path(p) for p in paths}
        moved = sum(row is not None and row.mtime_ns == p.stat().st_mtime_ns for p, row in rows.items())
        committed.append((self.collection.count(), moved))

    monkeypatch.setattr(ingest.IngestRun, "commit", recorded)
    index_paths([photos], "c", tiny, options=IndexOptions(progress=False, workers=0, commit_every=5))
    assert [rows for rows, _ in committed] == [5, 10, 15, 18]
    for path in paths:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    committed.clear()
    report = index_paths([photos], "c", options=IndexOptions(progress=False, workers=0, commit_every=2))
    assert report.touched == 18
    assert [moved for _, moved in committed] == [16, 18]
    # Failures count with the touched rows (commit_every=1: a commit at 8 of them together). The 5
    # bad files come first by name, so the commit falls after the 3rd touched file.
    for i in range(5):
        (photos / f"bad{i}.png").write_bytes(b"not a picture")
    for path in paths[:5]:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    committed.clear()
    index_paths([photos], "c", options=IndexOptions(progress=False, workers=0, commit_every=1))
    failures = indexer.open_collection("c").failures
    assert [moved - 13 for _, moved in committed] == [3, 5] and len(failures()) == 5


def test_only_files_with_new_content_are_decoded(
    tiny: str, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = []
    decode_file = ingest.decode_file

    def recorded(path: str, *args: object) -> object:
        decoded.append(Path(path).name)
        return decode_file(path, *args)

    monkeypatch.setattr(ingest, "decode_file", recorded)
    shutil.copy(photos / "img00003.png", photos / "z-copy.png")
    index_paths([photos], "c", tiny, options=FAST)
    assert sorted(decoded) == sorted(p.name for p in photos.rglob("img*"))  # not the copy, which comes later
    decoded.clear()
    stat = (photos / "img00004.jpg").stat()
    os.utime(photos / "img00004.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    shutil.copy(photos / "img00005.png", photos / "z-copy-2.png")
    write_image(photos / "img00007.png", 600)
    report = index_paths([photos], "c", options=FAST)
    assert (report.touched, report.reused, report.updated) == (1, 1, 1)
    assert decoded == ["img00007.png"]


def test_pipes_and_broken_links_are_reported_and_never_block_a_run(
    tiny: str, photos: Path, tmp_path: Path
) -> None:
    os.mkfifo(photos / "pipe.jpg")  # opened for reading, a pipe waits for a writer forever
    (photos / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (photos / "loop-a.jpg").symlink_to(photos / "loop-b.jpg")
    (photos / "loop-b.jpg").symlink_to(photos / "loop-a.jpg")
    command = [sys.executable, "-m", "pixglot", "index", str(photos), "--collection", "c", "--model", tiny]
    done = subprocess.run(command + ["--quiet"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    collection = indexer.open_collection("c")
    assert collection.count() == 18
    reasons = {Path(f.path).name: f.reason for f in collection.failures()}
    assert reasons == {
        "pipe.jpg": "not a regular file (a named pipe)",
        "dangling.png": "no such file or directory",
        "loop-a.jpg": "too many levels of symbolic links",
        "loop-b.jpg": "too many levels of symbolic links",
    }


def _folder_below_path_max(root: Path) -> str:
    """A folder nested deeper than PATH_MAX (4,096 bytes), made through folder descriptors: no
    process can list it by its path, whatever its permissions (the tests run as root too)."""
    fd = os.open(root, os.O_RDONLY)
    name = "d" * 250
    for _ in range(20):
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    return os.path.join(root, *[name] * 20)


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_indexed(tiny: str, photos: Path) -> None:
    deep = _folder_below_path_max(photos / "trip")
    report = index_paths([photos], "c", tiny, options=FAST)
    assert report.added == 18
    failures = dict(report.failures)
    unlisted = [path for path in failures if path.startswith(str(photos / "trip" / "d"))]
    assert len(unlisted) == 1 and deep.startswith(unlisted[0]) and len(unlisted[0]) > 4096
    assert failures[unlisted[0]] == "file name too long"


def test_a_damaged_owner_file_stops_a_new_collection_and_is_kept(
    tiny: str, photos: Path, pixglot_home: Path
) -> None:
    owner = pixglot_home / "collections" / "c" / "collection.json"
    owner.parent.mkdir(parents=True)
    owner.write_bytes(b'{"name": "c", "uid": ')  # cut short
    with pytest.raises(FileFormatError, match=r"collection\.json: unreadable .*mend or remove it"):
        index_paths([photos], "c", tiny, options=FAST)
    assert owner.read_bytes() == b'{"name": "c", "uid": '
    with pytest.raises(indexer.CollectionNotFound):
        indexer.open_collection("c")


def test_a_bug_in_pixglot_stops_the_run_instead_of_failing_every_file(
    tiny: str, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: bytes) -> str:
        raise NameError("a bug, not a bad file")

    monkeypatch.setattr("indexer.decode.content_hash", broken)
    with pytest.raises(NameError, match="a bug, not a bad file"):
        index_paths([photos], "c", tiny, options=FAST)


def test_file_size_limit_refuses_big_files(tiny: str, photos: Path) -> None:
    report = index_paths(
        [photos], "c", tiny, options=IndexOptions(progress=False, workers=0, max_file_bytes=1000)
    )
    big = {path for path, reason in report.failures if "limit" in reason}
    assert big and all(os.path.getsize(p) > 1000 for p in big)


def test_worker_processes_give_the_same_vectors_as_in_process(tiny: str, photos: Path) -> None:
    index_paths([photos], "inline", tiny, options=FAST)
    report = index_paths(
        [photos], "pooled", tiny, options=IndexOptions(progress=False, workers=2, commit_every=5)
    )
    assert report.encoded == 18
    inline, pooled = indexer.open_collection("inline"), indexer.open_collection("pooled")
    for path in sorted(photos.rglob("*.*"))[:4]:
        a, b = inline.image_by_path(path), pooled.image_by_path(path)
        np.testing.assert_allclose(stored_vector(inline, a.id), stored_vector(pooled, b.id), atol=1e-5)


def test_another_model_is_refused_with_a_clear_error(
    tiny: str, photos: Path, pixglot_home: Path, tiny_encoder: model.Encoder
) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    model.save(model.create("tiny-test", seed=1), pixglot_home / "models" / "other")
    with pytest.raises(ModelMismatch, match="reindex --collection c --model other"):
        index_paths([photos], "c", "other", options=FAST)
    with pytest.raises(ModelMismatch):
        indexer.open_collection("c").search("cat", model="other")
    # Same weights under another name are the same model.
    model.save(tiny_encoder, pixglot_home / "models" / "tiny-copy")
    assert index_paths([photos], "c", "tiny-copy", options=FAST).unchanged == 18


def test_reindex_switches_the_model_and_keeps_ids(tiny: str, photos: Path, pixglot_home: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    ids = {Path(h.path).name: h.image_id for h in collection.search("x", k=50)}
    other = model.create("tiny-test", seed=1)
    model.save(other, pixglot_home / "models" / "other")
    old_shards = collection.shard_store().folder
    report = indexer.reindex("c", "other", options=FAST)
    assert report.encoded == 18 and report.pruned == 0
    collection = indexer.open_collection("c")
    assert collection.fingerprint == other.fingerprint and collection.model == "other"
    assert not old_shards.exists()
    hits = collection.search(image=photos / "img00004.jpg", k=1)
    assert hits[0].image_id == ids["img00004.jpg"] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ModelMismatch):
        index_paths([photos], "c", tiny, options=FAST)


def test_reindex_drops_images_whose_files_are_gone(tiny: str, photos: Path, pixglot_home: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    (photos / "img00005.png").unlink()
    model.save(model.create("tiny-test", seed=1), pixglot_home / "models" / "other")
    report = indexer.reindex("c", "other", options=FAST)
    assert report.pruned == 1 and report.failed == 1
    assert indexer.open_collection("c").count() == 17


def test_reindex_takes_the_new_content_of_files_changed_since_they_were_indexed(
    tiny: str, photos: Path, pixglot_home: Path
) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    edited = photos / "img00006.jpg"
    old = collection.image_by_path(edited)
    write_image(edited, seed=990, size=(40, 30))
    model.save(model.create("tiny-test", seed=1), pixglot_home / "models" / "other")
    report = indexer.reindex("c", "other", options=FAST)
    assert (report.encoded, report.failed) == (18, 0)
    collection = indexer.open_collection("c")
    new = collection.image_by_path(edited)
    stat = edited.stat()
    assert new.id == old.id and new.content_hash != old.content_hash
    assert (new.size, new.mtime_ns, new.width, new.height) == (stat.st_size, stat.st_mtime_ns, 40, 30)
    hit = collection.search(image=edited, k=1)[0]
    assert hit.image_id == new.id and hit.score == pytest.approx(1.0, abs=1e-4)


def pixglot_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, PixglotWarning)]


def test_without_a_model_the_new_collection_says_which_it_uses_and_what_it_knows(photos: Path) -> None:
    jpegs = len([*photos.rglob("*.jpg"), *photos.rglob("*.jpeg")])
    assert 0 < jpegs < 18
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert index_paths([photos], "c", options=FAST).added == 18
    said = pixglot_warnings(caught)
    assert len(said) == 2
    assert said[0].startswith("no --model given: the new collection 'c' uses 'demo'. Pixglot's demo model")
    assert said[0].endswith("It knows emoji, not photos.")
    assert said[1].startswith(f"model 'demo' knows emoji, not photos, and {jpegs} of the 18 files to index")
    assert indexer.open_collection("c").model == "demo"
    # A rerun names no model either, but the collection has one, and no new photo comes with it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index_paths([photos], "c", options=FAST)
    assert pixglot_warnings(caught) == []
    write_image(photos / "new.jpeg", seed=7)
    with pytest.warns(PixglotWarning, match="knows emoji, not photos, and 1 of the 1 files"):
        index_paths([photos], "c", options=FAST)


@pytest.mark.parametrize("knows", [["photos"], []])
def test_a_model_that_knows_photos_or_does_not_say_gets_no_warning(
    knows: list[str], photos: Path, pixglot_home: Path, tiny_encoder: model.Encoder
) -> None:
    model.save(
        model.Encoder(tiny_encoder.net, {**tiny_encoder.config, "knows": knows}),
        pixglot_home / "models" / "m",
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index_paths([photos], "c", "m", options=FAST)
    assert pixglot_warnings(caught) == []


def test_the_cli_prints_each_warning_as_one_line(photos: Path, capsys: pytest.CaptureFixture) -> None:
    assert indexer_cli(["index", str(photos), "-c", "c", "-q", "--workers", "0"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[:2] for line in lines] == [["pixglot", " warning"]] * 2
    assert "uses 'demo'" in lines[0] and "not photos" in lines[1]


def test_rebuild_from_shards_gives_the_same_results(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    before = [(h.image_id, round(h.score, 5)) for h in collection.search("a red boat", k=10)]
    for path in collection.folder.glob("index*"):
        path.unlink()  # a lost index is rebuilt on the next search
    fresh = indexer.open_collection("c")
    assert [(h.image_id, round(h.score, 5)) for h in fresh.search("a red boat", k=10)] == before
    indexer.rebuild("c")
    rebuilt = indexer.open_collection("c")
    assert [(h.image_id, round(h.score, 5)) for h in rebuilt.search("a red boat", k=10)] == before


def test_orphan_shards_are_ignored_and_collected(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    store = collection.shard_store()
    # What a run killed between writing a shard and committing its rows leaves behind.
    orphan = store.write(np.array([10_000, 10_001]), ["a" * 64, "b" * 64], np.ones((2, collection.dim)))
    (store.folder / "half-written.parquet.1234abcd.tmp").write_bytes(b"partial")
    assert collection.search("x", k=100)[-1].image_id < 10_000
    assert len(collection.search("x", k=100)) == 18
    index_paths([photos], "c", options=FAST)
    assert not (store.folder / orphan).exists()
    assert not list(store.folder.glob("*.tmp"))


def test_stale_index_catches_up_with_the_database(tiny: str, photos: Path, tmp_path: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    reader = indexer.open_collection("c")
    assert len(reader.search("x", k=100)) == 18
    write_images(photos / "new", 3, first_seed=500)
    (photos / "img00000.jpg").unlink()
    index_paths([photos], "c", options=IndexOptions(progress=False, workers=0, prune=True))
    hits = reader.search("x", k=100)  # the reader's index predates both changes
    assert len(hits) == 20
    assert str(photos / "img00000.jpg") not in {h.path for h in hits}


def test_corrupt_index_json_is_rebuilt(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    (collection.folder / INDEX_JSON).write_text("{not json")
    assert len(indexer.open_collection("c").search("x", k=100)) == 18


def _files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_searches_never_write_even_when_the_saved_index_is_stale_or_damaged(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    folder = indexer.open_collection("c").folder
    (folder / INDEX_JSON).write_text("{not json")
    before = _files_of(folder)
    assert len(indexer.open_collection("c").search("x", k=100)) == 18  # built in memory
    assert _files_of(folder) == before
    # The next writer mends what it finds.
    write_images(photos / "more", 2, first_seed=700)
    index_paths([photos], "c", options=FAST)
    assert _files_of(folder)[INDEX_JSON] != b"{not json"


def test_metadata_from_exif_is_stored(tiny: str, tmp_path: Path) -> None:
    folder = tmp_path / "exif"
    exif = SampleExif(
        datetime(2019, 7, 14, 10, 20, 30), "Canon", "Canon EOS 5D", (-33.86, 151.2), orientation=6
    )
    write_image(folder / "photo.jpg", seed=1, size=(64, 48), exif=exif)
    write_image(folder / "plain.png", seed=2)
    index_paths([folder], "c", tiny, options=FAST)
    collection = indexer.open_collection("c")
    row = collection.image_by_path(folder / "photo.jpg")
    assert (row.width, row.height) == (48, 64)  # orientation 6: stored upright
    assert row.taken_at == datetime(2019, 7, 14, 10, 20, 30)
    assert row.camera == "Canon EOS 5D"
    assert row.gps_lat == pytest.approx(-33.86, abs=1e-4) and row.gps_lon == pytest.approx(151.2, abs=1e-4)
    plain = collection.image_by_path(folder / "plain.png")
    assert (plain.taken_at, plain.camera, plain.gps_lat) == (None, None, None)


def test_scan_skips_hidden_excluded_and_non_images(tmp_path: Path) -> None:
    write_images(tmp_path, 2)
    write_image(tmp_path / ".hidden.jpg", seed=3)
    write_image(tmp_path / ".cache" / "a.jpg", seed=4)
    write_image(tmp_path / "raw" / "b.jpg", seed=5)
    write_image(tmp_path / "keep" / "c.TIFF", seed=6)
    write_image(tmp_path / "keep" / "d.bmp", seed=7)
    (tmp_path / "notes.txt").write_text("not an image")
    found = {Path(e.path).relative_to(tmp_path).as_posix() for e in scan([str(tmp_path)], exclude=["raw"])}
    assert found == {"img00000.jpg", "img00001.png", "keep/c.TIFF", "keep/d.bmp"}
    by_glob = {Path(e.path).name for e in scan([str(tmp_path)], exclude=["*.png", "keep/*.bmp"])}
    assert by_glob == {"img00000.jpg", "b.jpg", "c.TIFF"}


def test_missing_folder_is_an_error_before_anything_is_written(tiny: str, tmp_path: Path) -> None:
    with pytest.raises(indexer.collection.PixglotError, match="no such file or folder"):
        index_paths([tmp_path / "nope"], "c", tiny, options=FAST)
    with pytest.raises(indexer.CollectionNotFound):
        indexer.open_collection("c")


def test_image_path_serves_only_indexed_files(tiny: str, photos: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    write_image(secret, seed=42)
    index_paths([photos], "c", tiny, options=FAST)
    index_paths([secret], "other", tiny, options=FAST)
    collection = indexer.open_collection("c")
    row = collection.image_by_path(photos / "img00000.jpg")
    assert collection.image_path(row.id) == photos / "img00000.jpg"
    assert collection.is_indexed(photos / "trip" / ".." / "img00000.jpg")
    other_id = indexer.open_collection("other").image_by_path(secret).id
    assert collection.image_path(other_id) is None  # an id from another collection
    assert collection.image_path("1; DROP TABLE images") is None
    assert not collection.is_indexed(photos / ".." / "secret.jpg")
    assert not collection.is_indexed("/etc/passwd")
    # A file swapped for another one since indexing is not served.
    (photos / "img00000.jpg").write_bytes(b"x" * 10)
    assert collection.image_path(row.id) is None and not collection.is_indexed(photos / "img00000.jpg")


def indexer_cli(argv: list[str]) -> int:
    from pixglot.cli import main

    return main(argv)


def test_cli_index_and_its_actions(
    tiny: str, photos: Path, pixglot_home: Path, capsys: pytest.CaptureFixture
) -> None:
    assert indexer_cli(["index", str(photos), "-c", "c", "-m", tiny, "-q", "--workers", "0"]) == 0
    assert "18 added" in capsys.readouterr().out
    assert indexer_cli(["index", "list"]) == 0
    assert capsys.readouterr().out.startswith("c\t18 images\tmodel tiny")
    assert indexer_cli(["index", "rebuild", "-c", "c"]) == 0
    assert "index rebuilt, 18 vectors, exact" in capsys.readouterr().out
    model.save(model.create("tiny-test", seed=1), pixglot_home / "models" / "other")
    assert indexer_cli(["index", "-c", "c", "-m", "other", "--reindex", "-q", "--workers", "0"]) == 0
    assert indexer.open_collection("c").model == "other"
    assert indexer_cli(["index", str(photos), "-c", "c", "-m", tiny, "-q"]) == 2
    assert "reindex --collection c --model tiny" in capsys.readouterr().err
    assert indexer_cli(["index", "drop", "-c", "c"]) == 0
    with pytest.raises(indexer.CollectionNotFound):
        indexer.open_collection("c")
    assert not (pixglot_home / "collections" / "c").exists()


def test_one_writer_at_a_time_while_searches_go_on(tiny: str, photos: Path) -> None:
    index_paths([photos], "c", tiny, options=FAST)
    writer, other = indexer.open_collection("c"), indexer.open_collection("c")
    for path in writer.folder.glob("index*"):
        path.unlink()  # the reader must build its index in memory: the writer holds the lock
    with writer.writing():
        with pytest.raises(indexer.collection.locking.CollectionBusy), other.writing(wait=False):
            pass
        assert len(other.search("x", k=30)) == 18
        assert not list(writer.folder.glob("index*"))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming width x height pixels, with no pixel data: a decompression bomb's opening."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def hostile_corpus(folder: Path) -> tuple[set[str], dict[str, str]]:
    """Good images, odd but readable ones, and entries that must be skipped: (the paths to be
    indexed, {path of each skipped entry: a word its reason must hold})."""
    good = {}
    for seed, name in enumerate(["a.jpg", "b.png", "in-a-folder.jpg/c.jpg", "new\nline.png"]):
        write_image(folder / name, seed=seed)
        good[name] = folder / name
    raw = os.fsencode(folder)
    not_utf8 = Path(os.fsdecode(raw + b"/caf\xe9.jpg"))
    write_image(not_utf8, seed=10)
    sample = sample_image(11, (40, 30))
    sample.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.asarray(sample.convert("L"), dtype=np.uint16) * 257).save(folder / "grey16.png")
    frames = [sample, sample_image(12, (40, 30))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    indexed = {str(p) for p in good.values()} | {str(not_utf8)}
    indexed |= {str(folder / n) for n in ("cmyk.jpg", "grey16.png", "animated.gif")}

    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good["a.jpg"].read_bytes()[:200])
    (folder / "bomb.png").write_bytes(png_claiming(40_000, 40_000))
    os.mkfifo(folder / "pipe.png")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    Path(os.fsdecode(raw + b"/bad\xff.png")).write_bytes(b"text, not an image")
    skipped = {
        "zero.jpg": "not a readable image",
        "truncated.jpg": "image",
        "bomb.png": "too large",
        "pipe.png": "not a regular file",
        "loop.jpg": "symbolic links",
        "dangling.jpg": "no such file",
        os.fsdecode(b"bad\xff.png"): "not a readable image",
    }
    return indexed, {str(folder / name): word for name, word in skipped.items()}


def test_a_hostile_folder_indexes_every_good_image_and_lists_every_skipped_entry(
    tiny: str, tmp_path: Path, pixglot_home: Path
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    indexed, skipped = hostile_corpus(folder)
    command = [sys.executable, "-m", "pixglot", "index", str(folder), "-c", "c", "-m", tiny, "--quiet"]
    process = subprocess.Popen(
        [*command, "--workers", "2"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = process.communicate(timeout=180)  # a hang fails here
        assert process.returncode == 0, err
        deadline = time.monotonic() + 10  # the fork server and workers end just after the run
        while living_members(process.pid):
            assert time.monotonic() < deadline, f"the run left processes: {living_members(process.pid)}"
            time.sleep(0.05)
    finally:
        kill_group(process.pid)
    collection = indexer.open_collection("c")
    assert {h.path for h in collection.search("x", k=50)} == indexed
    reasons = {f.path: f.reason for f in collection.failures()}
    assert set(reasons) == set(skipped)
    for path, word in skipped.items():
        assert word in reasons[path], (path, reasons[path])


# -- one file read by a worker (indexer.decode) ----------------------------------------------------


def test_a_file_is_inspected_with_its_size_time_and_upright_dimensions(tmp_path: Path) -> None:
    exif = Image.Exif()
    for turn in range(1, 9):
        exif[0x0112] = turn
        path = tmp_path / f"turn{turn}.jpg"
        Image.new("RGB", (40, 20), (90, 120, 200)).save(path, exif=exif.tobytes())
        stat = path.stat()
        before = time.perf_counter()
        found = decode.inspect_file(str(path))
        elapsed = time.perf_counter() - before
        # Orientations 5 to 8 turn the picture a quarter: it is shown 20 wide and 40 high.
        assert (found.width, found.height) == ((20, 40) if turn >= 5 else (40, 20)), turn
        assert (found.path, found.size, found.mtime_ns) == (str(path), stat.st_size, stat.st_mtime_ns)
        assert 0 < found.seconds <= elapsed
    before = time.perf_counter()
    decoded = decode.decode_file(str(path), 64)
    elapsed = time.perf_counter() - before
    assert (decoded.path, decoded.image.size) == (str(path), (20, 40))
    assert 0 < decoded.seconds <= elapsed


def test_a_bad_file_is_a_failure_with_its_reason_size_and_time(tmp_path: Path) -> None:
    note = tmp_path / "note.jpg"
    note.write_bytes(b"hello, I am text")
    stat = note.stat()
    for read in (decode.inspect_file, lambda path: decode.decode_file(path, 64)):
        before = time.perf_counter()
        failed = read(str(note))
        elapsed = time.perf_counter() - before
        assert (failed.path, failed.reason) == (str(note), "not a readable image (unknown or corrupt format)")
        assert 0 < failed.seconds <= elapsed
    # The failure record keeps them: what the file was when it could not be read.
    inspected = decode.inspect_file(str(note))
    assert (inspected.size, inspected.mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(3 << 20)  # 3 MiB of holes: cheap to make, and never read when refused
    over = "file is 3 MiB, over the 2 MiB limit"
    assert decode.inspect_file(str(big), max_bytes=2 << 20).reason == over
    assert decode.decode_file(str(big), 64, max_bytes=2 << 20).reason == over
    at_limit = decode.inspect_file(str(big), max_bytes=3 << 20)  # read, then found not to be an image
    assert at_limit.reason == "not a readable image (unknown or corrupt format)"


def test_a_named_pipe_or_a_device_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)

    def give_up(signum: int, frame: object) -> None:
        raise RuntimeError("reading a named pipe waited for a writer")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(5)
    try:
        results = [decode.inspect_file(str(pipe)), decode.decode_file(str(pipe), 64)]
        results.append(decode.inspect_file("/dev/null"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    reasons = [r.reason for r in results]
    assert reasons == ["not a regular file (a named pipe)"] * 2 + ["not a regular file (a character device)"]
    assert (results[0].size, results[0].mtime_ns) == (None, None)  # nothing was read


def test_an_error_without_a_known_reason_still_reads_as_one_line() -> None:
    assert decode.failure_reason(ValueError()) == "cannot decode image: ValueError"
    assert decode.failure_reason(SyntaxError("not a PNG file")) == "cannot decode image: not a PNG file"
