"""Crash safety: `pixglot index` killed with SIGKILL at three points of a run, then rerun.

The kills land where a crash does the most harm, on every run: after a shard is written but before
its transaction commits, right after a transaction, and in the middle of saving the FAISS index.
The rerun must resume (encode only what was not committed), index nothing twice, and leave the
database, the Parquet shards and the FAISS index in agreement: every vector id in the shards and
in the index belongs to exactly one image row, and every row has exactly one vector."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from crash_support import run_in_group, run_killed_at
from sqlalchemy import select

import indexer
import model
from ground import db
from indexer.samples import write_images

IMAGES = 150
COMMIT_EVERY = 4


def index_command(folder: Path) -> list[str]:
    # Small commits, so that a kill lands between many of them.
    every = str(COMMIT_EVERY)
    return ["index", str(folder), "--collection", "crash", "--model", "tiny", "--quiet", "--workers", "1"] + [
        "--commit-every",
        every,
        "--batch-size",
        every,
    ]


def shard_files(home: Path) -> list[Path]:
    return list((home / "collections" / "crash" / "shards").glob("*/*.parquet"))


def committed_rows(url: str) -> list[tuple[int, str]]:
    engine = db.connect(url)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(db.images.c.id, db.images.c.path))]


def test_killed_runs_resume_without_duplicates_or_losses(pixglot_home: Path, tmp_path: Path) -> None:
    model.save(model.create("tiny-test"), pixglot_home / "models" / "tiny")
    folder = tmp_path / "photos"
    write_images(folder, IMAGES, size=(40, 30))
    url = f"sqlite:///{pixglot_home / 'pixglot.db'}"
    env = {**os.environ, "PIXGLOT_HOME": str(pixglot_home)}
    command = index_command(folder)

    # The 4th shard is on disk, its transaction never commits: three commits hold, one orphan shard.
    run_killed_at(command, "indexer.shards:ShardStore.write", "after", 4, env)
    assert len(committed_rows(url)) == 3 * COMMIT_EVERY and len(shard_files(pixglot_home)) == 4
    # Killed just after its 5th transaction: five more commits hold.
    run_killed_at(command, "indexer.ingest:IngestRun.commit", "after", 5, env)
    assert len(committed_rows(url)) == 8 * COMMIT_EVERY
    # Killed in the middle of saving the FAISS index: its new file written, not yet in place.
    run_killed_at(command, "faiss:write_index", "after", 1, env)
    before_last = committed_rows(url)
    assert 8 * COMMIT_EVERY <= len(before_last) <= IMAGES

    returncode, out, err = run_in_group([sys.executable, "-m", "pixglot", *command], env)
    assert returncode == 0, err
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
