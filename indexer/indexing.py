"""The indexing entry points the CLI and the UI call: index folders, re-index with another model."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from ground import db
from ground.errors import InputError, PixglotWarning
from indexer.collection import Collection, CollectionNotFound, resolve_engine
from indexer.ingest import ExistingRow, IndexOptions, IndexReport, IngestRun, Job, jobs_for_files
from indexer.scan import check_roots, scan, under

if TYPE_CHECKING:
    from indexer.shards import ShardStore
    from model import Encoder

DEFAULT_MODEL = "demo"
# The formats cameras and phones write: a folder of them is a folder of photos.
PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg"})


def model_label(name: str) -> str:
    """How a collection records its model: a name as given, a directory as an absolute path."""
    path = os.path.expanduser(name)
    if os.sep in name or name.startswith(".") or (os.path.isdir(path) and not os.path.isabs(name)):
        return os.path.abspath(path)
    return name


def _load_model(name: str) -> Encoder:
    import model

    return model.load(name)


def index_paths(
    paths: Sequence[str | os.PathLike[str]],
    collection: str,
    model: str | None = None,
    database: str | Engine | None = None,
    options: IndexOptions | None = None,
) -> IndexReport:
    """Index the images under `paths` into `collection` (created on first use, tied to `model`).

    Rerunning is incremental: unchanged files are skipped, renamed and duplicate files reuse their
    vectors, and with `options.prune` rows of files gone from under `paths` are dropped.
    """
    options = check_options(options or IndexOptions())
    roots = check_roots(paths)
    engine = resolve_engine(database)
    start = time.perf_counter()
    try:
        target = Collection.open(collection, engine)
    except CollectionNotFound:
        target = None
    name = model or (target.model if target is not None else DEFAULT_MODEL)
    encoder = _load_model(name)
    if target is None and model is None:
        warnings.warn(
            f"no --model given: the new collection {collection!r} uses {name!r}. {encoder.description}",
            PixglotWarning,
            stacklevel=2,
        )
    if target is None:
        try:
            target = Collection.create(
                collection, model_label(name), encoder.fingerprint, encoder.dim, engine
            )
        except IntegrityError:
            # Another process created it meanwhile: use theirs (the model is checked below).
            target = Collection.open(collection, engine)
    report = IndexReport(collection)
    with target.writing():
        target.check_model(encoder, name)
        existing = _existing_rows(target)
        entries = list(scan(roots, options.exclude))
        jobs = jobs_for_files(entries, existing, report)
        _warn_if_photos_are_unknown(name, encoder, jobs)
        run = IngestRun(target, encoder, options, report, "add")
        run.known = {row.content_hash: row.id for row in existing.values()}
        run.run(jobs)
        seen = {entry.path for entry in entries}
        report.pruned = _forget_unseen(target, roots, seen, existing, options.prune)
        index_start = time.perf_counter()
        target.compact()
        target.sync_index()
        report.timings["index"] = time.perf_counter() - index_start
    report.seconds = time.perf_counter() - start
    return report


def _warn_if_photos_are_unknown(name: str, encoder: Encoder, jobs: Sequence[Job]) -> None:
    """A model that says what it knows, and photos are not among it, finds nonsense in photos."""
    if not encoder.knows or "photos" in encoder.knows:
        return
    photos = sum(os.path.splitext(job.path)[1].lower() in PHOTO_EXTENSIONS for job in jobs)
    if photos:
        warnings.warn(
            f"model {name!r} knows {' and '.join(encoder.knows)}, not photos, and {photos} of the "
            f"{len(jobs)} files to index are JPEG photos: searching them with it gives confident "
            "nonsense. Index photos with a model that knows them (`pixglot models list`)",
            PixglotWarning,
            stacklevel=3,
        )


def _existing_rows(collection: Collection) -> dict[str, ExistingRow]:
    c = db.images.c
    with collection.engine.connect() as conn:
        rows = conn.execute(
            select(c.path, c.id, c.content_hash, c.size, c.mtime_ns).where(c.collection_id == collection.id)
        )
        return {
            path: ExistingRow(image_id, digest, size, mtime) for path, image_id, digest, size, mtime in rows
        }


def _forget_unseen(
    collection: Collection, roots: list[str], seen: set[str], existing: dict[str, ExistingRow], prune: bool
) -> int:
    """Drop failure records of files no longer found under `roots`, and with `prune` their rows."""
    with collection.engine.begin() as conn:
        failures = conn.execute(
            select(db.index_failures.c.path).where(db.index_failures.c.collection_id == collection.id)
        ).scalars()
        stale = [p for p in failures if p not in seen and any(under(p, r) for r in roots)]
        collection.forget_failures(conn, stale)
        if not prune:
            return 0
        gone = [
            row.id
            for path, row in existing.items()
            if path not in seen and any(under(path, r) for r in roots)
        ]
        if gone:
            collection.delete_images(conn, gone)
            collection.bump(conn)
        return len(gone)


def reindex(
    collection: str,
    model: str,
    database: str | Engine | None = None,
    options: IndexOptions | None = None,
) -> IndexReport:
    """Encode every image of `collection` with `model` and switch the collection to it.

    Resumable: vectors already written for the new model are kept. Images whose files are gone or
    unreadable are dropped at the switch (listed as failures). The old model's vectors are deleted
    only after the switch commits.
    """
    options = check_options(options or IndexOptions())
    start = time.perf_counter()
    target = Collection.open(collection, database)
    encoder = _load_model(model)
    report = IndexReport(collection)
    with target.writing():
        if encoder.fingerprint == target.fingerprint and encoder.dim == target.dim:
            _set_model(target, model_label(model), encoder)
            report.seconds = time.perf_counter() - start
            return report
        store = target.shard_store(encoder.fingerprint, encoder.dim)
        done = _stored_hashes(target, encoder.fingerprint, store)
        rows = _existing_rows(target)
        report.scanned = len(rows)
        jobs = [Job(path, row) for path, row in rows.items() if row.id not in done]
        report.unchanged = len(rows) - len(jobs)
        _warn_if_photos_are_unknown(model, encoder, jobs)
        run = IngestRun(target, encoder, options, report, "reencode")
        run.known = {digest: image_id for image_id, digest in done.items()}
        run.run(jobs)
        report.pruned = _switch_model(target, model_label(model), encoder, store)
        index_start = time.perf_counter()
        target.reload()
        target.collect_garbage()
        target.sync_index(force_rebuild=True)
        report.timings["index"] = time.perf_counter() - index_start
    report.seconds = time.perf_counter() - start
    return report


def _stored_hashes(collection: Collection, fingerprint: str, store: ShardStore) -> dict[int, str]:
    """id -> content hash of the vectors a model's shards already hold."""
    with collection.engine.connect() as conn:
        shards = collection.shard_rows(conn, fingerprint)
    done: dict[int, str] = {}
    for shard in shards:
        data = store.read(shard.name, with_vectors=False)
        done.update(zip(data.ids.tolist(), data.hashes, strict=True))
    return done


def _switch_model(collection: Collection, label: str, encoder: Encoder, store: ShardStore) -> int:
    """One transaction: drop rows without a vector for the new model, point the collection at it,
    forget the old model's shards. Returns the number of rows dropped."""
    have = np.fromiter(_stored_hashes(collection, encoder.fingerprint, store), dtype=np.int64)
    with collection.engine.begin() as conn:
        live = collection.live_ids(conn)
        missing = np.setdiff1d(live, have)
        if len(missing):
            collection.delete_images(conn, missing.tolist())
        conn.execute(
            delete(db.shards)
            .where(db.shards.c.collection_id == collection.id)
            .where(db.shards.c.model_fingerprint != encoder.fingerprint)
        )
        conn.execute(
            update(db.collections)
            .where(db.collections.c.id == collection.id)
            .values(model=label, model_fingerprint=encoder.fingerprint, dim=encoder.dim)
        )
        collection.bump(conn)
    return len(missing)


def _set_model(collection: Collection, label: str, encoder: Encoder) -> None:
    with collection.engine.begin() as conn:
        conn.execute(
            update(db.collections)
            .where(db.collections.c.id == collection.id)
            .values(model=label, model_fingerprint=encoder.fingerprint, dim=encoder.dim)
        )
    collection.reload()


def rebuild(collection: str, database: str | Engine | None = None) -> Collection:
    """Rebuild the collection's FAISS index from its shards (merging them first)."""
    target = Collection.open(collection, database)
    target.rebuild()
    return target


def check_options(options: IndexOptions) -> IndexOptions:
    if options.commit_every < 1:
        raise InputError(f"commit size {options.commit_every}: must be at least 1")
    if options.batch_size is not None and options.batch_size < 1:
        raise InputError(f"batch size {options.batch_size}: must be at least 1")
    if options.workers is not None and options.workers < 0:
        raise InputError(f"workers {options.workers}: must be 0 or more")
    if options.ray is not None:
        from indexer import on_ray

        on_ray.check_cluster(options.ray)  # before anything is written
    return options
