"""The serial part of an indexing run, alone: committing encoded images, then building the search index.

    python bench/bench_commit.py                                  # 200,000 rows of 768-d vectors
    python bench/bench_commit.py --rows 20000 --commit-every 256,4096

However many machines decode and encode (`--ray`), one process commits: for every `commit_every`
images one Parquet shard written and fsynced, then one SQL transaction for their rows; at the end
the shards are compacted and the FAISS index built. This times exactly those steps: `IngestRun`'s
`consume` (the loop every run goes through) and the end of `index_paths`, fed vectors that are
already encoded (random unit vectors, as a model actor would return them) with made-up file facts,
so that nothing else is in the time. The rate is the ceiling of any cluster's indexing on this
machine's disk and SQLite. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if TYPE_CHECKING:
    from model import Encoder


def commit_rows(rows: int, commit_every: int, encoder: Encoder, name: str) -> dict:
    """Commit `rows` encoded images into a new collection; the seconds of each step."""
    from indexer import IndexOptions
    from indexer.collection import Collection
    from indexer.decode import Inspection
    from indexer.ingest import IndexReport, IngestRun, Job
    from indexer.on_ray import Encoded

    collection = Collection.create(name, "bench", encoder.fingerprint, encoder.dim)
    report = IndexReport(name)
    vectors = np.random.default_rng(0).standard_normal((rows, encoder.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    options = IndexOptions(commit_every=commit_every, progress=False)
    start = time.perf_counter()
    with collection.writing():
        run = IngestRun(collection, encoder, options, report, "add")

        def encoded() -> Iterator:  # what a run's results are once the cluster has encoded them
            for i in range(rows):
                path = f"/photos/{i // 1000:04d}/IMG_{i:08d}.jpg"
                digest = hashlib.blake2b(path.encode(), digest_size=16).hexdigest()
                inspection = Inspection(path, digest, 2_000_000, 0, 4032, 3024, None, None, None, None, 0.0)
                yield run.plan(Job(path, None), inspection), Encoded(vectors[i], 0.0, 0.0)

        run.consume(encoded(), rows)
        committed = time.perf_counter() - start
        start = time.perf_counter()
        collection.compact()
        compacted = time.perf_counter() - start
        start = time.perf_counter()
        collection.sync_index()
        indexed = time.perf_counter() - start
    assert collection.count() == rows == report.added
    return {
        "commit_every": commit_every,
        "commit_s": round(committed, 2),
        "rows_per_s": round(rows / committed),
        "compact_s": round(compacted, 2),
        "index_s": round(indexed, 2),
        "index_layout": collection.vector_index().state.layout.factory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--model", default="clippo-b16", help="a shipped config: its vector size and fingerprint"
    )
    parser.add_argument(
        "--commit-every", default="256,4096", help="images per shard and transaction, comma-separated"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pixglot-bench-commit-") as scratch:
        os.environ["PIXGLOT_HOME"] = str(Path(scratch) / "home")
        import model

        encoder = model.create(args.model)
        results = [
            commit_rows(args.rows, int(every), encoder, f"commit-{every}")
            for every in args.commit_every.split(",")
        ]
    print(
        json.dumps(
            {
                "rows": args.rows,
                "dim": encoder.dim,
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
