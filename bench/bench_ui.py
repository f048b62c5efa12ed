"""The web page's warm query on a 100k-image collection: render, encode, search, thumbnails, whole page.

    python bench/bench_ui.py                         # 100k images, ViT-B/16-sized model
    python bench/bench_ui.py --images 20000 --model-config clippo-s16
    python bench/bench_ui.py --home /tmp/ui-bench    # keep the collection for the next run

The collection is synthetic and built through the indexer's own storage (Collection.create, the
shard store, the images/shards tables, Collection.sync_index): random unit vectors for fake images
that share the content hashes of 24 real JPEG files, so every hit has a real thumbnail. The model has
random weights of the named shipped config: the same compute as trained weights.

Rows, per warm query (each query a new text; the median and 90th percentile over the queries):
- render: Encoder.render_query, the "what the model reads" image;
- encode: Encoder.encode_texts of the query (render included, as the search does it);
- search: the FAISS index for one page of hits and their database rows (Collection.search minus encode);
- thumbnails: one page (24) of cached thumbnails found and read;
- query total: app.query.run_search + app.thumbnails.thumbnails + reading them, as the page does;
- page rerun: the whole Streamlit script after typing the query (AppTest, no browser).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUERIES = [
    "قطة على الأريكة",
    "猫",
    "кошка спит",
    "chat noir",
    "बिल्ली",
    "犬と公園",
    "חוף הים",
    "سگ در پارک",
    "mountain lake at dawn",
    "고양이",
    "gato naranja",
    "Katze im Schnee",
]
N_REAL = 24
COLLECTION = "bench"
MODEL_NAME = "bench"
SHARD_ROWS = 10_000


def machine() -> str:
    import faiss
    import torch

    cpu = platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (
        f"{cpu}, {cores} cores{load}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"faiss {faiss.__version__}; Python {platform.python_version()}"
    )


def real_photos(folder: Path) -> list[Path]:
    """24 photo-sized JPEGs (1600x1200, smooth colour plus noise) for thumbnails to be made from."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1200, 0:1600].astype(np.float32)
    paths = []
    for i in range(N_REAL):
        a, b, c = rng.uniform(0.002, 0.01, 3)
        pixels = np.stack([np.sin(a * x + i), np.cos(b * y), np.sin(c * (x + y))], axis=-1) * 100 + 128
        pixels += rng.normal(0, 12, pixels.shape)
        path = folder / f"photo{i:02d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def build(n_images: int, config: str) -> None:
    """The synthetic collection in the current PIXGLOT_HOME (skipped when it is there already)."""
    from sqlalchemy import insert

    import model
    from ground import db
    from ground.home import data_home, models_dir
    from indexer.collection import Collection, CollectionNotFound
    from indexer.decode import content_hash
    from indexer.ingest import record_shard

    try:
        existing = Collection.open(COLLECTION)
        if existing.count() == n_images:
            return
        raise SystemExit(f"{data_home()} holds collection {COLLECTION!r} of another size; use a fresh --home")
    except CollectionNotFound:
        pass
    start = time.perf_counter()
    encoder = model.create(config)
    model.save(encoder, models_dir() / MODEL_NAME)
    photos = real_photos(data_home() / "photos")
    hashes = [content_hash(p.read_bytes()) for p in photos]
    sizes = [p.stat().st_size for p in photos]
    collection = Collection.create(COLLECTION, MODEL_NAME, encoder.fingerprint, encoder.dim)
    rng = np.random.default_rng(1)
    stamp = datetime.now(UTC)
    with collection.writing():
        store = collection.shard_store()
        for first in range(0, n_images, SHARD_ROWS):
            count = min(SHARD_ROWS, n_images - first)
            rows = []
            for i in range(first, first + count):
                real = i % N_REAL
                path = photos[real] if i < N_REAL else data_home() / "photos" / "synthetic" / f"{i:07d}.jpg"
                rows.append(
                    {
                        "collection_id": collection.id,
                        "path": str(path),
                        "content_hash": hashes[real],
                        "size": sizes[real],
                        "mtime_ns": 0,
                        "width": 1600,
                        "height": 1200,
                        "taken_at": datetime(2015, 1, 1) + timedelta(hours=i),
                        "camera": None,
                        "gps_lat": None,
                        "gps_lon": None,
                        "indexed_at": stamp,
                    }
                )
            vectors = rng.normal(size=(count, encoder.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            with collection.engine.begin() as conn:
                ids = np.asarray(
                    conn.execute(
                        insert(db.images).returning(db.images.c.id, sort_by_parameter_order=True), rows
                    )
                    .scalars()
                    .all(),
                    dtype=np.int64,
                )
                record_shard(
                    conn,
                    collection.id,
                    store,
                    encoder.fingerprint,
                    ids,
                    [r["content_hash"] for r in rows],
                    vectors,
                    stamp,
                )
                collection.bump(conn)
        index = collection.sync_index()
    print(
        f"built {n_images:,} images ({index.state.layout.summary}) in {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{1000 * statistics.median(ordered):.1f} | {1000 * p90:.1f}"


def measure(rounds: int) -> tuple[dict[str, list[float]], dict[str, float], str]:
    from streamlit.testing.v1 import AppTest

    from app import query, thumbnails
    from indexer.collection import Collection
    from indexer.searching import Hit

    collection = Collection.open(COLLECTION)
    cold: dict[str, float] = {}
    start = time.perf_counter()
    encoder = collection.encoder()
    cold["model load"] = time.perf_counter() - start
    start = time.perf_counter()
    index = collection.vector_index()
    cold["index load"] = time.perf_counter() - start
    # The rows of the real files: the only ones a thumbnail can be made from (the others share them).
    with collection.engine.connect() as conn:
        first = collection.live_ids(conn)[:N_REAL]
    real = [Hit(row.id, row.path, 0.0, row.metadata()) for row in collection.images(first).values()]
    for cached in Path(os.environ["PIXGLOT_HOME"], "cache", "thumbnails").glob("*/*.jpg"):
        cached.unlink()
    start = time.perf_counter()
    made = thumbnails.thumbnails(collection, real)
    cold["thumbnails: a page of 24 made from 1600x1200 JPEGs"] = time.perf_counter() - start
    assert all(made), "thumbnails of the real files could not be made"

    def page_of_thumbnails(hits: list) -> None:
        paths = thumbnails.thumbnails(collection, hits)
        assert all(paths), "a hit without its thumbnail"
        for path in paths:
            path.read_bytes()  # what st.image does with each

    steps = ("render", "encode", "search", "thumbnails", "query total", "page rerun")
    rows: dict[str, list[float]] = {step: [] for step in steps}
    page = AppTest.from_file(
        str(Path(__file__).resolve().parent.parent / "app" / "main.py"), default_timeout=300
    )
    page.run()
    for text in QUERIES:  # warm: the fonts of every script loaded once, as after a first query
        query.run_search(collection, query.SearchRequest(COLLECTION, text), 0, query.PAGE_SIZE)
    for round_ in range(1, rounds + 1):
        for text in QUERIES:
            words = f"{text} {round_}"
            request = query.SearchRequest(COLLECTION, words)
            t0 = time.perf_counter()
            encoder.render_query(words)
            t1 = time.perf_counter()
            vector = encoder.encode_texts([words])[0]
            t2 = time.perf_counter()
            _, ids = index.search(vector, query.PAGE_SIZE)
            collection.images(ids[0][ids[0] >= 0])
            t3 = time.perf_counter()
            hits = query.run_search(collection, request, 0, query.PAGE_SIZE)
            t4 = time.perf_counter()
            page_of_thumbnails(hits)
            t5 = time.perf_counter()
            page_of_thumbnails(query.run_search(collection, request, 0, query.PAGE_SIZE))
            t6 = time.perf_counter()
            page.text_input(key="text").input(words).run()
            t7 = time.perf_counter()
            if page.exception or page.error:
                raise SystemExit(f"the page failed: {[e.value for e in page.exception or page.error]}")
            for step, seconds in zip(
                steps, (t1 - t0, t2 - t1, t3 - t2, t5 - t4, t6 - t5, t7 - t6), strict=True
            ):
                rows[step].append(seconds)
    return rows, cold, index.state.layout.summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--model-config", default="clippo-b16", help="shipped model config (random weights)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the queries")
    parser.add_argument("--threads", type=int, help="PyTorch and FAISS threads (default: one per core)")
    parser.add_argument(
        "--home", type=Path, help="PIXGLOT_HOME to build in and keep (default: a temporary one)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixglot-ui-bench-") as scratch:
        os.environ["PIXGLOT_HOME"] = str(args.home or scratch)
        build(args.images, args.model_config)
        if args.threads:
            import faiss
            import torch

            torch.set_num_threads(args.threads)
            faiss.omp_set_num_threads(args.threads)
        rows, cold, layout = measure(args.rounds)
    n = len(rows["render"])
    print(f"Machine: {machine()}")
    print(f"Collection: {args.images:,} synthetic images, model config {args.model_config}, index {layout}")
    print(f"Warm queries: {n} ({len(QUERIES)} texts x {args.rounds} rounds), a page of 24 hits\n")
    print("| step | median ms | p90 ms |\n|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {ms(values)} |")
    print("\n| cold step | ms |\n|---|---|")
    for name, seconds in cold.items():
        print(f"| {name} | {1000 * seconds:.0f} |")


if __name__ == "__main__":
    main()
