"""A collection: database rows (metadata), Parquet shards (vectors) and a FAISS index, kept in agreement.

    PIXGLOT_HOME/collections/<name>/collection.json      which database row owns this folder
    PIXGLOT_HOME/collections/<name>/shards/<model>/*.parquet   vectors: the source of truth
    PIXGLOT_HOME/collections/<name>/index.json, index-*.faiss  rebuildable from the shards

Writes take the collection's lock (one writer; searches never wait). A shard is written and
fsynced before the transaction that inserts its image rows and lists it in `shards` commits, so a
crash leaves at worst a shard file that no row lists: an orphan, deleted when the next writer
opens the collection. The FAISS index is brought up to date from the shards and the deletion log
whenever the database's generation moved past the one it reflects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from ground import db
from ground.errors import FileFormatError, InputError, PixglotError
from ground.home import collections_dir
from indexer import locking
from indexer.scan import normalise_path
from indexer.searching import Hit, ImageQuery, search_collection
from indexer.shards import TMP_SUFFIX, ShardStore, atomic_write
from indexer.vector_index import VectorIndex

if TYPE_CHECKING:
    from model import Encoder

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OWNER_FILE = "collection.json"
LOCK_FILE = ".lock"
COMPACT_ROWS = 65_536  # rows per shard when shards are merged
COMPACT_DEAD = 0.3  # merge a model's shards once this fraction of their rows are deleted images
COMPACT_SHARDS = 512  # ... or once there are this many


class CollectionNotFound(PixglotError):
    pass


class ModelMismatch(PixglotError):
    pass


def now() -> datetime:
    return datetime.now(UTC)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InputError(
            f"collection name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def resolve_engine(database: str | Engine | None) -> Engine:
    return database if isinstance(database, Engine) else db.connect(database)


@dataclass(frozen=True)
class ShardRow:
    name: str
    first_id: int
    last_id: int
    rows: int


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str
    failed_at: datetime
    size: int | None  # of the file when it failed, where it could be read
    mtime_ns: int | None


@dataclass(frozen=True)
class ImageRow:
    id: int
    path: str
    content_hash: str
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    taken_at: datetime | None
    camera: str | None
    gps_lat: float | None
    gps_lon: float | None

    def metadata(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "camera": self.camera,
            "gps": [self.gps_lat, self.gps_lon] if self.gps_lat is not None else None,
            "size": self.size,
            "content_hash": self.content_hash,
        }


IMAGE_COLUMNS = [getattr(db.images.c, name) for name in ImageRow.__dataclass_fields__]


class Collection:
    """One named collection in one database. Cheap to open; the model loads on first text query."""

    def __init__(self, engine: Engine, row: dict):
        self.engine = engine
        self.id: int = row["id"]
        self.name: str = row["name"]
        self.uid: str = row["uid"]
        self.model: str = row["model"]
        self.fingerprint: str = row["model_fingerprint"]
        self.dim: int = row["dim"]
        self.folder = collections_dir() / self.name
        self._index: VectorIndex | None = None
        self._encoder = None
        self._writing = False
        # Held while the index is searched or brought up to date (a UI searches from several
        # threads, and an update changes the FAISS index in place) and while the model loads.
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, model={self.model!r}, dim={self.dim})"

    # ----- opening -----
    @classmethod
    def open(cls, name: str, database: str | Engine | None = None) -> Collection:
        engine = resolve_engine(database)
        with engine.connect() as conn:
            row = (
                conn.execute(select(db.collections).where(db.collections.c.name == check_name(name)))
                .mappings()
                .first()
            )
        if row is None:
            raise CollectionNotFound(
                f"no collection named {name!r}; create one with `pixglot index PATH --collection {name}`"
            )
        return cls(engine, dict(row))

    @classmethod
    def create(
        cls, name: str, model: str, fingerprint: str, dim: int, database: str | Engine | None = None
    ) -> Collection:
        engine = resolve_engine(database)
        stamp = now()
        values = {
            "name": check_name(name),
            "uid": uuid.uuid4().hex,
            "model": model,
            "model_fingerprint": fingerprint,
            "dim": dim,
            "generation": 0,
            "created_at": stamp,
            "updated_at": stamp,
        }
        folder = collections_dir() / name
        owner = _read_owner(folder)
        if owner is not None:
            raise PixglotError(
                f"{folder} holds the vectors of another database's collection {name!r}; "
                "remove that folder or choose another collection name"
            )
        with engine.begin() as conn:
            values["id"] = conn.execute(insert(db.collections).values(values)).inserted_primary_key[0]
        collection = cls(engine, values)
        collection._claim_folder()
        return collection

    def _claim_folder(self) -> None:
        owner = _read_owner(self.folder)
        if owner is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"name": self.name, "uid": self.uid}, indent=2)
            atomic_write(self.folder / OWNER_FILE, lambda tmp: tmp.write_text(text))
        elif owner != self.uid:
            raise PixglotError(
                f"{self.folder} holds the vectors of another database's collection {self.name!r}; "
                "remove that folder or choose another collection name"
            )

    def reload(self) -> None:
        """Re-read the collection's row (its model changes when it is re-indexed elsewhere)."""
        fresh = Collection.open(self.name, self.engine)
        if fresh.fingerprint != self.fingerprint:
            self._index = None
            self._encoder = None
        self.model, self.fingerprint, self.dim = fresh.model, fresh.fingerprint, fresh.dim

    # ----- the model -----
    def encoder(self) -> Encoder:
        """The collection's model, loaded once; an error if its weights no longer match the collection."""
        with self.lock:
            if self._encoder is None:
                import model

                encoder = model.load(self.model)
                self.check_model(encoder, self.model)
                self._encoder = encoder
            return self._encoder

    def check_model(self, encoder: Encoder, name: str) -> None:
        if encoder.fingerprint != self.fingerprint or encoder.dim != self.dim:
            raise ModelMismatch(
                f"collection {self.name!r} was indexed with model {self.model!r} "
                f"(fingerprint {self.fingerprint[:12]}); model {name!r} has fingerprint "
                f"{encoder.fingerprint[:12]}. Search it with its own model, or re-index it with "
                f"`pixglot index reindex --collection {self.name} --model {name}`"
            )

    # ----- storage -----
    def shard_store(self, fingerprint: str | None = None, dim: int | None = None) -> ShardStore:
        fingerprint = fingerprint or self.fingerprint
        return ShardStore(self.folder / "shards" / fingerprint[:16], dim or self.dim)

    def shard_rows(self, conn: Connection, fingerprint: str | None = None) -> list[ShardRow]:
        query = (
            select(db.shards.c.name, db.shards.c.first_id, db.shards.c.last_id, db.shards.c.rows)
            .where(db.shards.c.collection_id == self.id)
            .where(db.shards.c.model_fingerprint == (fingerprint or self.fingerprint))
            .order_by(db.shards.c.first_id)
        )
        return [ShardRow(*r) for r in conn.execute(query)]

    def read_vectors(
        self, ids: Iterable[int], fingerprint: str | None = None, dim: int | None = None
    ) -> dict[int, np.ndarray]:
        """Vectors of `ids` from the shards of one model (the collection's by default)."""
        wanted = np.unique(np.fromiter(ids, dtype=np.int64))
        if len(wanted) == 0:
            return {}
        with self.engine.connect() as conn:
            rows = self.shard_rows(conn, fingerprint)
        store = self.shard_store(fingerprint, dim)
        found: dict[int, np.ndarray] = {}
        firsts = np.array([r.first_id for r in rows], dtype=np.int64)
        owner = np.searchsorted(firsts, wanted, side="right") - 1
        for shard_index in np.unique(owner[owner >= 0]):
            shard = rows[int(shard_index)]
            data = store.read(shard.name, ids=wanted[owner == shard_index])
            found.update(zip(data.ids.tolist(), data.vectors, strict=True))
        return found

    def live_ids(self, conn: Connection, above: int = 0) -> np.ndarray:
        query = select(db.images.c.id).where(db.images.c.collection_id == self.id)
        if above:
            query = query.where(db.images.c.id > above)
        return np.sort(np.fromiter((r[0] for r in conn.execute(query)), dtype=np.int64))

    def iter_shard_vectors(
        self, live: np.ndarray, shard_rows: Sequence[ShardRow], store: ShardStore | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of the ids in sorted array `live`, shard by shard in id order; each id once."""
        store = store or self.shard_store()
        highest = -1
        earlier: list[np.ndarray] = []
        for shard in shard_rows:
            data = store.read(shard.name)
            keep = _members(data.ids, live)
            # Shards cover disjoint id ranges; only an overlap (never written so) needs the slow check.
            if shard.first_id <= highest and earlier:
                keep &= ~np.isin(data.ids, np.concatenate(earlier))
            highest = max(highest, shard.last_id)
            earlier.append(data.ids)
            if keep.any():
                yield data.ids[keep], data.vectors[keep]

    def state(self, conn: Connection) -> tuple[int, int, int]:
        """(generation, live images, sum of their ids) as the database has them."""
        generation = self.generation(conn)
        count, id_sum = conn.execute(
            select(func.count(), func.coalesce(func.sum(db.images.c.id), 0)).where(
                db.images.c.collection_id == self.id
            )
        ).one()
        return int(generation), int(count), int(id_sum)

    def generation(self, conn: Connection) -> int:
        value = conn.execute(
            select(db.collections.c.generation).where(db.collections.c.id == self.id)
        ).scalar()
        if value is None:
            raise CollectionNotFound(f"collection {self.name!r} was deleted")
        return int(value)

    # ----- writing -----
    @contextmanager
    def writing(self, wait: bool = True) -> Iterator[Collection]:
        """Hold the collection's write lock; on entry, clean up after any crashed writer."""
        if self._writing:
            yield self
            return
        self._claim_folder()
        with locking.exclusive(self.folder / LOCK_FILE, f"collection {self.name!r}", wait=wait):
            self._writing = True
            try:
                self.reload()
                self.collect_garbage()
                yield self
            finally:
                self._writing = False

    def collect_garbage(self) -> int:
        """Delete shard files that no committed row lists (a crashed run's, or superseded ones)."""
        assert self._writing
        with self.engine.connect() as conn:
            listed = {
                (fp[:16], name)
                for fp, name in conn.execute(
                    select(db.shards.c.model_fingerprint, db.shards.c.name).where(
                        db.shards.c.collection_id == self.id
                    )
                )
            }
        removed = 0
        root = self.folder / "shards"
        if not root.is_dir():
            return 0
        for model_dir in root.iterdir():
            if not model_dir.is_dir():
                continue
            for path in model_dir.iterdir():
                if path.name.endswith(TMP_SUFFIX) or (model_dir.name, path.name) not in listed:
                    path.unlink(missing_ok=True)
                    removed += 1
            if not any(model_dir.iterdir()):
                model_dir.rmdir()
        return removed

    def bump(self, conn: Connection) -> None:
        conn.execute(
            update(db.collections)
            .where(db.collections.c.id == self.id)
            .values(generation=db.collections.c.generation + 1, updated_at=now())
        )

    def forget_failures(self, conn: Connection, paths: Sequence[str]) -> None:
        """Drop the failure records of `paths` (inside the caller's transaction)."""
        for chunk in _chunks(paths):
            conn.execute(
                delete(db.index_failures)
                .where(db.index_failures.c.collection_id == self.id)
                .where(db.index_failures.c.path.in_(chunk))
            )

    def image_ids(self, conn: Connection, paths: Sequence[str]) -> list[int]:
        """The ids of the rows of `paths`, in their order (inside the caller's transaction)."""
        ids: dict[str, int] = {}
        for chunk in _chunks(paths):
            query = (
                select(db.images.c.path, db.images.c.id)
                .where(db.images.c.collection_id == self.id)
                .where(db.images.c.path.in_(chunk))
            )
            ids.update(conn.execute(query).all())
        return [ids[path] for path in paths]

    def delete_images(self, conn: Connection, ids: Sequence[int]) -> None:
        """Delete image rows and log them for the FAISS index (inside the caller's transaction)."""
        for chunk in _chunks([int(i) for i in ids], 10_000):
            conn.execute(delete(db.images).where(db.images.c.id.in_(chunk)))
            conn.execute(
                insert(db.deleted_images), [{"collection_id": self.id, "image_id": i} for i in chunk]
            )

    # ----- the FAISS index -----
    def vector_index(self) -> VectorIndex:
        """The FAISS index, brought up to date with the database if it lags behind.

        A search only adds and drops entries in memory (or builds the index there from the
        shards): searches never write. A writer also rebuilds when the index does not match, and
        saves the result.
        """
        with self.lock:
            return self._current_index()

    def _current_index(self) -> VectorIndex:
        with self.engine.connect() as conn:
            generation = self.generation(conn)
        if (
            self._index is not None
            and self._index.state.generation == generation
            and self._index.state.model_fingerprint == self.fingerprint
        ):
            return self._index
        if self._writing:
            return self.sync_index()
        return self._refresh_in_memory()

    def _load_saved(self) -> VectorIndex | None:
        if self._index is not None and VectorIndex.saved_file(self.folder) == self._index.state.file:
            return self._index
        saved = VectorIndex.load(self.folder)
        if saved is None and VectorIndex.saved_file(self.folder) is not None:
            saved = VectorIndex.load(self.folder)  # a writer replaced it while we read: once more
        if saved is None or saved.state.model_fingerprint != self.fingerprint or saved.state.dim != self.dim:
            return None
        return saved

    def _refresh_in_memory(self) -> VectorIndex:
        index = self._load_saved()
        if index is None:
            index = self._build()
        else:
            self._catch_up(index)
        self._index = index
        return index

    def _catch_up(self, index: VectorIndex) -> bool:
        """Apply deletions logged and shards committed since the index was saved; False if none."""
        with self.engine.connect() as conn:
            generation = self.generation(conn)
            if index.state.generation == generation:
                return False
            deleted = conn.execute(
                select(db.deleted_images.c.seq, db.deleted_images.c.image_id)
                .where(db.deleted_images.c.collection_id == self.id)
                .where(db.deleted_images.c.seq > index.state.tombstone_seq)
                .order_by(db.deleted_images.c.seq)
            ).all()
            new_ids = self.live_ids(conn, above=index.state.max_id)
            shards = [s for s in self.shard_rows(conn) if s.last_id > index.state.max_id]
        if deleted:
            index.remove(np.array([r.image_id for r in deleted], dtype=np.int64))
            index.state.tombstone_seq = int(deleted[-1].seq)
        if len(new_ids):
            for ids, vectors in self.iter_shard_vectors(new_ids, shards):
                index.add(ids, vectors)
        index.state.generation = generation
        return True

    def sync_index(self, force_rebuild: bool = False) -> VectorIndex:
        """Writer only: make the saved index match the database exactly, rebuilding when needed."""
        assert self._writing
        index = None if force_rebuild else self._load_saved()
        changed = False
        if index is not None:
            changed = self._catch_up(index)
            with self.engine.connect() as conn:
                generation, count, id_sum = self.state(conn)
            consistent = (index.state.live, index.state.id_sum) == (count, id_sum)
            if not consistent or index.needs_rebuild(count) or generation != index.state.generation:
                index = None
        if index is None:
            index = self._build()
            self._trim_deletion_log(index.state.tombstone_seq)
            changed = True
        if changed:
            index.save(self.folder)
        self._index = index
        return index

    def _build(self) -> VectorIndex:
        with self.engine.connect() as conn:
            generation = self.generation(conn)
            seq = conn.execute(
                select(func.coalesce(func.max(db.deleted_images.c.seq), 0)).where(
                    db.deleted_images.c.collection_id == self.id
                )
            ).scalar_one()
            live = self.live_ids(conn)
            shards = self.shard_rows(conn)
        missing = self._missing_vectors(live, shards)
        if len(missing):
            if not self._writing:
                raise PixglotError(
                    f"collection {self.name!r}: {len(missing)} images have no stored vector; "
                    f"run `pixglot index rebuild --collection {self.name}`"
                )
            self._drop_rows_without_vectors(missing)
            return self._build()
        index = VectorIndex.build(
            lambda: self.iter_shard_vectors(live, shards), len(live), self.dim, self.fingerprint
        )
        index.state.generation = generation
        index.state.tombstone_seq = int(seq)
        index.state.max_id = max(index.state.max_id, int(live.max()) if len(live) else 0)
        return index

    def _missing_vectors(self, live: np.ndarray, shards: Sequence[ShardRow]) -> np.ndarray:
        store = self.shard_store()
        present = [np.zeros(0, np.int64)]
        for shard in shards:
            try:
                present.append(store.read(shard.name, with_vectors=False).ids)
            except FileFormatError:
                continue  # unreadable: its rows count as missing and are indexed again
        return np.setdiff1d(live, np.concatenate(present))

    def _drop_rows_without_vectors(self, missing: np.ndarray) -> None:
        """Rows whose shard was lost (deleted or damaged by hand) are dropped, so that the next
        `pixglot index` run over their folders encodes them again."""
        store = self.shard_store()
        with self.engine.begin() as conn:
            for shard in self.shard_rows(conn):
                try:
                    store.read(shard.name, with_vectors=False)
                except FileFormatError:
                    conn.execute(
                        delete(db.shards)
                        .where(db.shards.c.collection_id == self.id)
                        .where(db.shards.c.name == shard.name)
                    )
            self.delete_images(conn, missing.tolist())
            self.bump(conn)

    def _trim_deletion_log(self, upto: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(db.deleted_images)
                .where(db.deleted_images.c.collection_id == self.id)
                .where(db.deleted_images.c.seq <= upto)
            )

    def rebuild(self) -> VectorIndex:
        """Merge the shards (dropping deleted images' vectors) and build the FAISS index afresh."""
        with self.writing():
            self.compact(force=True)
            return self.sync_index(force_rebuild=True)

    def compact(self, force: bool = False) -> bool:
        """Rewrite the current model's shards without deleted images' vectors, COMPACT_ROWS per file,
        when enough of them are dead (or `force`). Vectors keep their ids, so the index stays valid."""
        assert self._writing
        with self.engine.connect() as conn:
            shards = self.shard_rows(conn)
            live = self.live_ids(conn)
        stored = sum(s.rows for s in shards)
        dead = stored - len(live)
        if not shards or not (force or dead > COMPACT_DEAD * stored or len(shards) > COMPACT_SHARDS):
            return False
        store = self.shard_store()
        written: list[dict] = []
        pending: list[tuple[np.ndarray, list[str], np.ndarray]] = []
        pending_rows = 0

        def flush() -> None:
            nonlocal pending, pending_rows
            if not pending:
                return
            ids = np.concatenate([p[0] for p in pending])
            hashes = [h for p in pending for h in p[1]]
            vectors = np.concatenate([p[2] for p in pending])
            written.append(_shard_values(self.id, self.fingerprint, store.write(ids, hashes, vectors), ids))
            pending, pending_rows = [], 0

        for shard in shards:
            data = store.read(shard.name)
            keep = _members(data.ids, live)
            if keep.any():
                pending.append(
                    (
                        data.ids[keep],
                        [h for h, k in zip(data.hashes, keep, strict=True) if k],
                        data.vectors[keep],
                    )
                )
                pending_rows += int(keep.sum())
            if pending_rows >= COMPACT_ROWS:
                flush()
        flush()
        with self.engine.begin() as conn:
            conn.execute(
                delete(db.shards)
                .where(db.shards.c.collection_id == self.id)
                .where(db.shards.c.model_fingerprint == self.fingerprint)
                .where(db.shards.c.name.in_([s.name for s in shards]))
            )
            if written:
                conn.execute(insert(db.shards), written)
        for shard in shards:
            store.remove(shard.name)
        return True

    # ----- reading -----
    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).where(db.images.c.collection_id == self.id)).scalar_one()

    def failures(self) -> list[Failure]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    db.index_failures.c.path,
                    db.index_failures.c.reason,
                    db.index_failures.c.failed_at,
                    db.index_failures.c.size,
                    db.index_failures.c.mtime_ns,
                )
                .where(db.index_failures.c.collection_id == self.id)
                .order_by(db.index_failures.c.path)
            ).all()
        return [Failure(*r) for r in rows]

    def images(
        self, ids: Iterable[int], conn: Connection | None = None, where: Sequence = ()
    ) -> dict[int, ImageRow]:
        """Rows of `ids` in this collection that satisfy the extra `where` clauses."""
        ids = [int(i) for i in ids]
        found: dict[int, ImageRow] = {}
        with _connection(self.engine, conn) as c:
            for chunk in _chunks(ids):
                query = (
                    select(*IMAGE_COLUMNS)
                    .where(db.images.c.collection_id == self.id)
                    .where(db.images.c.id.in_(chunk))
                    .where(*where)
                )
                for row in c.execute(query):
                    found[row.id] = ImageRow(*row)
        return found

    def image(self, image_id: int) -> ImageRow | None:
        return self.images([image_id]).get(int(image_id))

    def image_by_path(self, path: str | os.PathLike[str]) -> ImageRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*IMAGE_COLUMNS)
                .where(db.images.c.collection_id == self.id)
                .where(db.images.c.path == normalise_path(path))
            ).first()
        return ImageRow(*row) if row is not None else None

    def image_path(self, image_id: int) -> Path | None:
        """The file of an indexed image, for serving it, or None.

        Only ids of this collection resolve, so no request can name an arbitrary file; the file
        must still be a regular file of the indexed size (a file swapped since is not served).
        """
        try:
            row = self.image(int(image_id))
        except (TypeError, ValueError):
            return None
        return _servable(row)

    def is_indexed(self, path: str | os.PathLike[str]) -> bool:
        """Whether `path` (after collapsing `..`) is an image of this collection that may be served."""
        try:
            row = self.image_by_path(path)
        except (TypeError, ValueError):
            return False
        return _servable(row) is not None

    def search(self, text: str | None = None, image: ImageQuery | None = None, **options) -> list[Hit]:
        """Ranked hits; see `indexer.searching.search_collection` for the options."""
        return search_collection(self, text, image, **options)

    # ----- removing -----
    def drop(self) -> None:
        """Delete the collection: its rows and its folder."""
        with self.writing():
            with self.engine.begin() as conn:
                conn.execute(delete(db.images).where(db.images.c.collection_id == self.id))
                for table in (db.shards, db.index_failures, db.deleted_images):
                    conn.execute(delete(table).where(table.c.collection_id == self.id))
                conn.execute(delete(db.collections).where(db.collections.c.id == self.id))
            for child in self.folder.iterdir():
                if child.name != LOCK_FILE:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        (self.folder / LOCK_FILE).unlink(missing_ok=True)
        self.folder.rmdir()


def _servable(row: ImageRow | None) -> Path | None:
    if row is None or not os.path.isfile(row.path):
        return None
    try:
        if os.path.getsize(row.path) != row.size:
            return None
    except OSError:
        return None
    return Path(row.path)


def _members(ids: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of `ids` are in the sorted array `sorted_set` (O(n log m), unlike np.isin's sort)."""
    if len(sorted_set) == 0:
        return np.zeros(len(ids), bool)
    where = np.clip(np.searchsorted(sorted_set, ids), 0, len(sorted_set) - 1)
    return sorted_set[where] == ids


def _read_owner(folder: Path) -> str | None:
    """The uid of the collection whose vectors `folder` holds; None when it holds none yet."""
    path = folder / OWNER_FILE
    try:
        owner = json.loads(path.read_text()).get("uid")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as err:
        # Read as "no owner", the folder would be claimed and another collection's vectors mixed in.
        raise FileFormatError(
            path, f"unreadable ({err}); it says which collection owns {folder}: mend or remove it"
        ) from None
    if not isinstance(owner, str):
        raise FileFormatError(path, f"no collection uid in it; it says which collection owns {folder}")
    return owner


def _shard_values(collection_id: int, fingerprint: str, name: str, ids: np.ndarray) -> dict:
    return {
        "collection_id": collection_id,
        "model_fingerprint": fingerprint,
        "name": name,
        "first_id": int(ids.min()),
        "last_id": int(ids.max()),
        "rows": len(ids),
        "created_at": now(),
    }


def _chunks(values: Sequence, size: int = 5_000) -> Iterator[Sequence]:
    """`values` in runs of `size`: one IN (...) list each, within every database's limit on bound
    parameters."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


@contextmanager
def _connection(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    if conn is not None:
        yield conn
    else:
        with engine.connect() as fresh:
            yield fresh


def list_collections(database: str | Engine | None = None) -> list[Collection]:
    engine = resolve_engine(database)
    with engine.connect() as conn:
        rows = conn.execute(select(db.collections).order_by(db.collections.c.name)).mappings().all()
    return [Collection(engine, dict(r)) for r in rows]
