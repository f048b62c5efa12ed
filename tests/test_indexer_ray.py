"""Indexing on Ray (`--ray`) against a real local Ray instance of 2 CPUs: the same images, vectors,
ids and failures as the single-machine path; a driver killed mid-run resumes without losing or
repeating anything, and leaves no Ray process behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from crash_support import run_in_group, run_killed_at
from hypothesis import given
from hypothesis import strategies as st

import indexer
from ground.errors import InputError
from indexer import IndexOptions, index_paths
from indexer.decode import Failure
from indexer.samples import write_image, write_images

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e .[ray]")
on_ray = pytest.importorskip("indexer.on_ray")

HERE = IndexOptions(progress=False, workers=0, commit_every=32)
ON_RAY = IndexOptions(progress=False, commit_every=32, ray="local")


@pytest.fixture(scope="module")
def cluster() -> None:
    """One local Ray instance for the module's in-process runs (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    write_images(photos, 160, size=(40, 30))
    write_images(photos / "more", 40, first_seed=500, size=(30, 40))
    whole = (photos / "img00000.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # a header, then too few pixels
    (photos / "note.png").write_bytes(b"hello, I am text")
    shutil.copy(photos / "img00002.jpg", photos / "more" / "copy.jpg")
    return photos


def snapshot(name: str, database: str | None = None) -> dict[str, tuple[int, str, np.ndarray]]:
    """Path -> (id, content hash, vector) of every image of collection `name`."""
    collection = indexer.open_collection(name, database)
    hits = collection.search("anything", k=10_000)
    vectors = collection.read_vectors([h.image_id for h in hits])
    rows = {h.path: collection.image_by_path(h.path) for h in hits}
    return {path: (row.id, row.content_hash, vectors[row.id]) for path, row in rows.items()}


def assert_same_collections(a: str, b: str) -> None:
    """Collections "here" in database `a` and "there" in `b`: the same rows, ids, vectors and failures."""
    here, there = snapshot("here", a), snapshot("there", b)
    assert sorted(here) == sorted(there)
    for path, (image_id, digest, vector) in here.items():
        assert (there[path][0], there[path][1]) == (image_id, digest), path
        np.testing.assert_allclose(there[path][2], vector, atol=1e-5)
    failures = {(f.path, f.reason, f.size) for f in indexer.open_collection("here", a).failures()}
    assert {(f.path, f.reason, f.size) for f in indexer.open_collection("there", b).failures()} == failures


@pytest.fixture
def databases(tmp_path: Path) -> tuple[str, str]:
    """Two databases, so that the ids both paths give can be compared."""
    return f"sqlite:///{tmp_path / 'here.db'}", f"sqlite:///{tmp_path / 'there.db'}"


def counts(report: indexer.IndexReport) -> tuple[int, ...]:
    return (report.added, report.updated, report.touched, report.encoded, report.reused, report.failed)


def test_ray_indexes_the_same_images_vectors_ids_and_failures_as_one_machine(
    cluster: None, tiny: str, folder: Path, databases: tuple[str, str]
) -> None:
    a, b = databases
    here = index_paths([folder], "here", tiny, a, options=HERE)
    there = index_paths([folder], "there", tiny, b, options=ON_RAY)
    assert counts(here) == counts(there) == (201, 0, 0, 200, 1, 2)
    assert_same_collections(a, b)
    # The cluster's decoding and encoding count in the run's timings, as this process's would.
    assert there.timings["decode"] > 0 and there.timings["encode"] > 0, there.timings
    # A second run: a renamed file, a changed one, a touched one and a new copy, on both paths.
    os.rename(folder / "img00010.jpg", folder / "more" / "renamed.jpg")
    write_image(folder / "img00000.jpg", 900, (40, 30))  # the same name, new content
    stat = (folder / "img00011.png").stat()
    os.utime(folder / "img00011.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    shutil.copy(folder / "img00012.jpg", folder / "copy-2.jpg")
    here = index_paths([folder], "here", database=a, options=replace(HERE, prune=True))
    there = index_paths([folder], "there", database=b, options=replace(ON_RAY, prune=True))
    assert counts(here) == counts(there) == (2, 1, 1, 1, 2, 2)
    assert here.pruned == there.pruned == 1
    assert_same_collections(a, b)


def test_a_file_skipped_on_the_cluster_as_known_by_a_look_alike_hash_is_encoded_here(
    cluster: None, tiny: str, folder: Path, databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every new file's first 64 bits of hash among the indexed ones: the tasks decode nothing, and
    # this process, which knows the whole hashes, decodes and encodes them itself.
    from indexer.decode import inspect_file

    every = [inspect_file(str(p)) for p in sorted(folder.rglob("*"))]
    prefixes = on_ray.hash_prefixes(i.content_hash for i in every if not isinstance(i, Failure))
    monkeypatch.setattr(on_ray, "hash_prefixes", lambda known: prefixes)
    a, b = databases
    index_paths([folder], "here", tiny, a, options=HERE)
    there = index_paths([folder], "there", tiny, b, options=ON_RAY)
    assert (there.added, there.encoded, there.failed) == (201, 200, 2)
    assert_same_collections(a, b)


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=30), st.binary(min_size=32, max_size=32))
def test_a_hash_is_known_exactly_when_its_prefix_is_among_the_known_ones(
    known: list[bytes], probe: bytes
) -> None:
    prefixes = on_ray.hash_prefixes(h.hex() for h in known)
    assert on_ray._known(prefixes, probe.hex()) == any(h[:8] == probe[:8] for h in known)
    assert all(on_ray._known(prefixes, h.hex()) for h in known)


def test_a_run_without_ray_never_imports_it(tiny: str, folder: Path) -> None:
    # The whole command, in a fresh process: Ray's import alone takes seconds and starts threads.
    code = (
        "import sys\nfrom pixglot.cli import main\n"
        "assert main(['index', sys.argv[1], '--collection', 'c', '--model', 'tiny', '--quiet']) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    )
    done = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert indexer.open_collection("c").count() == 201


def test_a_file_another_node_cannot_open_is_reported_with_that_node() -> None:
    missing = Failure("/photos/a.jpg", "no such file or directory", None, None, 0.01)
    elsewhere = on_ray._located(missing, "10.0.0.7", "10.0.0.2")
    assert elsewhere.reason.startswith("no such file or directory on Ray node 10.0.0.7: --ray needs")
    assert (elsewhere.path, elsewhere.seconds) == (missing.path, missing.seconds)
    assert on_ray._located(missing, "10.0.0.2", "10.0.0.2") == missing  # this machine's own view
    corrupt = Failure("/photos/b.jpg", "not a readable image (unknown or corrupt format)")
    assert on_ray._located(corrupt, "10.0.0.7", "10.0.0.2") == corrupt


def processes_with_home(home: Path) -> list[int]:
    """Processes whose environment has PIXGLOT_HOME=`home`: every process a run started, Ray's too."""
    needle = f"PIXGLOT_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue  # ended, or not ours to read
    return found


def test_a_killed_ray_run_resumes_without_losses_or_duplicates_and_leaves_no_process(
    tiny: str, folder: Path, pixglot_home: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PIXGLOT_HOME"] = str(pixglot_home)
    command = ["index", str(folder), "--collection", "c", "--model", tiny, "--quiet", "--ray"]
    command += ["--commit-every", "16"]
    # The driver dies right after its 3rd commit, with the cluster's tasks and actors at work.
    run_killed_at(command, "indexer.ingest:IngestRun.commit", "after", 3, env)
    deadline = time.monotonic() + 30
    while processes_with_home(pixglot_home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with_home(pixglot_home) == []
    committed = {path: row[:2] for path, row in snapshot("c").items()}
    assert 3 * 16 <= len(committed) < 201

    returncode, out, err = run_in_group([sys.executable, "-m", "pixglot", *command], env)
    assert returncode == 0, err
    after = snapshot("c")
    assert len(after) == 201 and len({image_id for image_id, _, _ in after.values()}) == 201
    assert all(after[path][:2] == row for path, row in committed.items())  # nothing lost
    # Only what was not committed is encoded: each new content once.
    new = {digest for path, (_, digest, _) in after.items() if path not in committed}
    assert f"({len(new - {digest for _, digest in committed.values()})} encoded" in out
    index_paths([folder], "here", tiny, options=HERE)
    here = snapshot("here")
    for path, (_, digest, vector) in here.items():
        assert after[path][1] == digest
        np.testing.assert_allclose(after[path][2], vector, atol=1e-5)
    assert processes_with_home(pixglot_home) == []


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "nonsense", "127.0.0.1:port"])
def test_an_address_without_a_cluster_is_a_clear_error_at_once(tiny: str, folder: Path, address: str) -> None:
    ray.shutdown()  # connect anew, not through the module's instance
    start = time.monotonic()
    with pytest.raises(InputError, match=f"--ray {re.escape(address)}: no Ray cluster answers there"):
        index_paths([folder], "c", tiny, options=IndexOptions(progress=False, ray=address))
    assert time.monotonic() - start < 30 and not ray.is_initialized()
