"""Crash safety: `pixglot index` killed with SIGKILL in the middle of a run, twice, then rerun.

The rerun must resume (encode only what was not committed), index nothing twice, and leave the
database, the Parquet shards and the FAISS index in agreement: every vector id in the shards and
in the index belongs to exactly one image row, and every row has exactly one vector."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from sqlalchemy import select

import indexer
import model
from indexer.samples import write_images
from pixglot import db

REPO = Path(__file__).resolve().parents[1]
IMAGES = 150


def start_indexing(folder: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "PIXGLOT_HOME": str(home), "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "pixglot",
        "index",
        str(folder),
        "--collection",
        "crash",
        "--model",
        "tiny",
    ]
    # Small commits so that a kill lands between, and inside, many of them.
    command += ["--commit-every", "4", "--batch-size", "4", "--workers", "1", "--quiet"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def shard_files(home: Path) -> list[Path]:
    return list((home / "collections" / "crash" / "shards").glob("*/*.parquet"))


def kill_midway(process: subprocess.Popen, home: Path, after_shards: int) -> None:
    deadline = time.monotonic() + 240
    while len(shard_files(home)) < after_shards:
        assert process.poll() is None, f"indexing ended before the kill: {process.communicate()}"
        assert time.monotonic() < deadline, "indexing made no progress"
        time.sleep(0.005)
    time.sleep(random.uniform(0, 0.05))  # land anywhere: encoding, writing a shard, committing
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def committed_rows(url: str) -> list[tuple[int, str]]:
    engine = db.connect(url)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(db.images.c.id, db.images.c.path))]


def test_killed_runs_resume_without_duplicates_or_losses(pixglot_home: Path, tmp_path: Path) -> None:
    model.save(model.create("tiny-test"), pixglot_home / "models" / "tiny")
    folder = tmp_path / "photos"
    write_images(folder, IMAGES, size=(40, 30))
    url = f"sqlite:///{pixglot_home / 'pixglot.db'}"

    kill_midway(start_indexing(folder, pixglot_home), pixglot_home, after_shards=4)
    first = len(committed_rows(url))
    kill_midway(
        start_indexing(folder, pixglot_home), pixglot_home, after_shards=len(shard_files(pixglot_home)) + 6
    )
    before_last = committed_rows(url)
    assert 0 < first <= len(before_last) < IMAGES, "both kills should land mid-way"

    last = start_indexing(folder, pixglot_home)
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err
    encoded = int(re.search(r"\((\d+) encoded", out).group(1))
    assert encoded == IMAGES - len(before_last), "the rerun re-encoded committed images"

    rows = committed_rows(url)
    ids = sorted(i for i, _ in rows)
    assert len(rows) == IMAGES and len({p for _, p in rows}) == IMAGES
    assert {p for _, p in before_last} <= {p for _, p in rows}  # nothing committed was lost

    collection = indexer.open_collection("crash", url)
    store = collection.shard_store()
    with collection.engine.connect() as conn:
        listed = collection.shard_rows(conn)
    # No orphan shard files remain, and every row's vector is in exactly one listed shard.
    assert sorted(p.name for p in store.folder.iterdir()) == sorted(s.name for s in listed)
    shard_ids = np.concatenate([store.read(s.name, with_vectors=False).ids for s in listed])
    assert sorted(shard_ids.tolist()) == ids

    index = collection.vector_index()
    assert sorted(faiss.vector_to_array(index.index.id_map).tolist()) == ids
    assert (index.state.live, index.state.dead) == (IMAGES, 0)
    probe = folder / "img00077.png"
    hit = collection.search(image=probe, k=1)[0]
    assert hit.path == str(probe) and hit.score == pytest.approx(1.0, abs=1e-4)
