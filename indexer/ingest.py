"""Indexing runs: files -> (worker processes) hash, header, pixels -> model -> shard + rows, committed
in small atomic steps so that a run killed at any moment resumes where it stopped.

Per file, in order:
1. unchanged size and mtime since the last run: skipped without reading it;
2. hashed (BLAKE2b of the bytes) with its header metadata read, in a worker;
3. same content as its row: only size/mtime are updated;
   same content as another indexed image (a renamed or duplicate file): that vector is copied;
   otherwise decoded in a worker and encoded by the model in batches;
4. every `commit_every` images: one shard file written and fsynced, then one transaction inserts
   their rows (replacing rows of changed files) and lists the shard.
A file that cannot be read is recorded in `index_failures` with the reason; the run goes on.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import insert, update
from sqlalchemy.engine import Connection
from tqdm import tqdm

from ground import db
from ground.processes import available_cores, worker_pool
from indexer.collection import Collection, now
from indexer.decode import MAX_FILE_BYTES, Decoded, Failure, Inspection, decode_file, inspect_file
from indexer.on_ray import Encoded
from indexer.scan import FileEntry
from indexer.shards import ShardStore

if TYPE_CHECKING:
    from model import Encoder


@dataclass
class IndexOptions:
    batch_size: int | None = None  # images per model call (None: the model's default)
    commit_every: int = 256  # images per shard file and transaction
    workers: int | None = None  # decoding processes; 0 decodes in this process; None: one per core
    exclude: Sequence[str] = ()
    prune: bool = False
    progress: bool = True
    max_file_bytes: int = MAX_FILE_BYTES
    # Read, decode and encode on a Ray cluster at this address ("local": a new one on this machine);
    # None: in this process and its decoding workers.
    ray: str | None = None


@dataclass
class IndexReport:
    collection: str
    scanned: int = 0
    unchanged: int = 0
    added: int = 0  # new files
    updated: int = 0  # files whose content changed
    touched: int = 0  # same content, new size/mtime record
    encoded: int = 0  # images run through the model
    reused: int = 0  # vectors copied from an identical indexed file
    failed: int = 0
    pruned: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    # Where the time went: worker seconds for inspect/decode (spread over the workers), wall
    # seconds in this process for encode/write/index.
    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("inspect", "decode", "encode", "write", "index"), 0.0)
    )

    def summary(self) -> str:
        rate = self.encoded / self.seconds if self.seconds else 0.0
        parts = [
            f"{self.collection}: {self.scanned} files",
            f"{self.added} added",
            f"{self.updated} changed",
            f"{self.unchanged + self.touched} unchanged",
            f"{self.reused} vectors reused",
            f"{self.failed} failed",
        ]
        if self.pruned:
            parts.append(f"{self.pruned} pruned")
        return ", ".join(parts) + f" ({self.encoded} encoded in {self.seconds:.1f} s, {rate:.1f} images/s)"


@dataclass(frozen=True)
class ExistingRow:
    id: int
    content_hash: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Job:
    path: str
    row: ExistingRow | None  # the file's current row (add: same path; reencode: the row itself)


class Action(Enum):
    FAIL = "fail"
    TOUCH = "touch"
    REUSE = "reuse"
    ENCODE = "encode"


@dataclass
class Plan:
    job: Job
    action: Action
    position: int  # in the run's jobs: rows are inserted in this order, however the vectors came
    inspection: Inspection | None = None
    reason: str = ""
    vector: np.ndarray | None = None
    failure: Failure | None = None  # why inspecting the file failed, with its size and time if known


class _InlineExecutor(Executor):
    """Runs each task at submit time: for workers=0 and for runs too small to start processes."""

    def submit(self, fn: Callable[..., object], /, *args: object, **kwargs: object) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future


def _executor(workers: int | None, jobs: int) -> tuple[Executor, int]:
    """The pool for inspecting and decoding, and its number of processes (0: this process)."""
    workers = min(available_cores() if workers is None else workers, jobs)
    if workers <= 0 or jobs < 2:
        return _InlineExecutor(), 0
    return worker_pool(workers), workers


def ordered_map(
    pool: Executor, items: Iterable, task: Callable[[object], tuple | None], window: int
) -> Iterator[tuple[object, object]]:
    """(item, result) in input order; `task(item)` gives (fn, *args) to run in `pool`, or None for
    items that pass through (result None). At most `window` items are in flight."""
    pending: deque[tuple[object, Future | None]] = deque()

    def ready() -> bool:
        head = pending[0][1]
        return head is None or head.done()

    for item in items:
        call = task(item)
        pending.append((item, pool.submit(*call) if call is not None else None))
        while pending and (len(pending) > window or ready()):
            done, future = pending.popleft()
            yield done, future.result() if future is not None else None
    while pending:
        done, future = pending.popleft()
        yield done, future.result() if future is not None else None


class IngestRun:
    """One pass of jobs through the pipeline, writing vectors for the model `encoder`.

    mode "add": jobs are scanned files; new rows are inserted (a changed file's row is replaced).
    mode "reencode": jobs are existing rows, encoded anew for a different model (re-indexing);
    their ids stay and the vectors go to that model's shards.
    """

    def __init__(
        self, collection: Collection, encoder: Encoder, options: IndexOptions, report: IndexReport, mode: str
    ):
        assert mode in ("add", "reencode")
        self.collection = collection
        self.encoder = encoder
        self.options = options
        self.report = report
        self.mode = mode
        self.fingerprint = encoder.fingerprint
        self.store = collection.shard_store(self.fingerprint, encoder.dim)
        self.image_size = encoder.image_size
        self.known: dict[str, int] = {}  # content hash -> an id whose vector this model's shards hold
        self.fresh: dict[str, np.ndarray | str] = {}  # hash -> vector (or failure reason) from this run
        self.to_encode: list[tuple[Plan, Decoded]] = []
        self.ready: list[Plan] = []  # rows to commit, vectors resolved at commit
        self.touched: list[Plan] = []
        self.failed: list[Plan] = []
        self.claimed: set[str] = set()  # hashes this run will encode (before their vectors exist)
        self.planned = 0

    # ----- classification -----
    def plan(self, job: Job, result: Inspection | Failure) -> Plan:
        position, self.planned = self.planned, self.planned + 1
        if isinstance(result, Failure):
            return Plan(job, Action.FAIL, position, reason=result.reason, failure=result)
        digest = result.content_hash
        if digest == self._row_hash(job):
            return Plan(job, Action.TOUCH, position, result)
        if digest in self.known or digest in self.claimed:
            return Plan(job, Action.REUSE, position, result)
        self.claimed.add(digest)
        return Plan(job, Action.ENCODE, position, result)

    def _row_hash(self, job: Job) -> str | None:
        """The content hash a file's row has, where the same content only touches the row."""
        return job.row.content_hash if self.mode == "add" and job.row is not None else None

    # ----- the run -----
    def run(self, jobs: Sequence[Job]) -> None:
        results = self._results_on_ray(jobs) if self.options.ray is not None else self._results_here(jobs)
        self.consume(results, len(jobs))

    def consume(self, results: Iterator[tuple[Plan, Encoded | Decoded | Failure | None]], total: int) -> None:
        """Accept each plan with its file's result, in file order, committing every `commit_every`
        new rows (or 8 times that many touched and failed ones) and at the end."""
        options = self.options
        progress = tqdm(
            total=total,
            desc=f"indexing {self.collection.name}",
            unit="img",
            disable=not options.progress,
            dynamic_ncols=True,
            smoothing=0.05,
        )
        with progress, contextlib.closing(results):
            for plan, result in results:
                self.accept(plan, result)
                progress.update(1)
                pending = len(self.ready) + len(self.to_encode)
                if (
                    pending >= options.commit_every
                    or len(self.touched) + len(self.failed) >= 8 * options.commit_every
                ):
                    self.commit()
            self.commit()

    def _results_here(self, jobs: Sequence[Job]) -> Iterator[tuple[Plan, Decoded | Failure | None]]:
        """Each job's plan, in order, with the file decoded where it is to be encoded: in worker
        processes, a window of files ahead."""
        options = self.options
        pool, workers = _executor(options.workers, len(jobs))
        ahead = max(1, workers)
        try:
            inspected = ordered_map(
                pool, jobs, lambda job: (inspect_file, job.path, options.max_file_bytes), 8 * ahead
            )
            planned = (self.plan(job, result) for job, result in inspected)
            yield from ordered_map(
                pool,
                planned,
                lambda p: (
                    (decode_file, p.job.path, self.image_size, options.max_file_bytes)
                    if p.action is Action.ENCODE
                    else None
                ),
                2 * (options.batch_size or 16) + 4 * ahead,
            )
        finally:
            # On an interrupt, queued decoding is dropped rather than waited for; what was
            # committed stays, and the next run resumes from there.
            pool.shutdown(wait=True, cancel_futures=True)

    def _results_on_ray(
        self, jobs: Sequence[Job]
    ) -> Iterator[tuple[Plan, Encoded | Decoded | Failure | None]]:
        """Each job's plan, in order, with the file encoded on the Ray cluster where it is to be."""
        from indexer import on_ray

        with on_ray.connected(self.options.ray):
            stream = on_ray.inspect_and_encode(
                [job.path for job in jobs],
                [self._row_hash(job) for job in jobs],
                self.known,
                self.encoder,
                self.options.max_file_bytes,
                self.options.batch_size,
            )
            for job, (inspected, outcome) in zip(jobs, stream, strict=True):
                plan = self.plan(job, inspected)
                if plan.action is not Action.ENCODE:
                    yield plan, None
                elif outcome is None:  # skipped as known by a hash prefix that only looked alike
                    yield plan, decode_file(job.path, self.image_size, self.options.max_file_bytes)
                else:
                    yield plan, outcome

    def accept(self, plan: Plan, decoded: Decoded | Failure | None) -> None:
        if plan.inspection is not None:
            self.report.timings["inspect"] += plan.inspection.seconds
        if plan.action is Action.FAIL:
            self.failed.append(plan)
        elif plan.action is Action.TOUCH:
            self.touched.append(plan)
        elif plan.action is Action.REUSE:
            self.ready.append(plan)
        elif isinstance(decoded, Failure):
            self.report.timings["decode"] += decoded.seconds
            self._fail(plan, decoded.reason)
        elif isinstance(decoded, Encoded):
            self.report.timings["decode"] += decoded.seconds
            self.report.timings["encode"] += decoded.encode_seconds
            self._encoded(plan, decoded.vector)
        else:
            self.report.timings["decode"] += decoded.seconds
            self.to_encode.append((plan, decoded))
            if len(self.to_encode) >= (self.options.batch_size or 16):
                self.encode()

    def _fail(self, plan: Plan, reason: str) -> None:
        plan.action, plan.reason = Action.FAIL, reason
        if plan.inspection is not None:
            self.fresh[plan.inspection.content_hash] = reason
        self.failed.append(plan)

    def encode(self) -> None:
        if not self.to_encode:
            return
        start = time.perf_counter()
        batch, self.to_encode = self.to_encode, []
        result = self.encoder.encode_images_tolerant(
            [decoded.image for _, decoded in batch], batch_size=self.options.batch_size
        )
        for position, vector in zip(result.ok, result.vectors, strict=True):
            self._encoded(batch[position][0], vector)
        for position, reason in result.failures:
            self._fail(batch[position][0], reason)
        self.report.timings["encode"] += time.perf_counter() - start

    def _encoded(self, plan: Plan, vector: np.ndarray) -> None:
        plan.vector = vector
        self.fresh[plan.inspection.content_hash] = vector
        self.ready.append(plan)
        self.report.encoded += 1

    def _resolve_vectors(self) -> None:
        """Give each reused row its vector: from this run, or from the shards (read once per shard)."""
        from_shards = {
            plan.inspection.content_hash
            for plan in self.ready
            if plan.vector is None and plan.inspection.content_hash not in self.fresh
        }
        stored = self.collection.read_vectors(
            (self.known[h] for h in from_shards if h in self.known), self.fingerprint, self.encoder.dim
        )
        kept = []
        for plan in self.ready:
            digest = plan.inspection.content_hash
            if plan.vector is None:
                source = self.fresh.get(digest)
                if source is None and digest in self.known:
                    source = stored.get(self.known[digest])
                if isinstance(source, np.ndarray):
                    plan.vector = source
                    self.report.reused += 1
                else:
                    self._fail(plan, source or "the identical file it would copy from could not be encoded")
                    continue
            kept.append(plan)
        self.ready = kept

    def commit(self) -> None:
        """One shard and one transaction for everything accepted so far."""
        self.encode()
        start = time.perf_counter()
        self._resolve_vectors()
        # Rows take ids in the order of the files, whichever vectors were ready first.
        ready = sorted(self.ready, key=lambda plan: plan.position)
        touched, failed = self.touched, self.failed
        if not (ready or touched or failed):
            return
        stamp = now()
        with self.collection.engine.begin() as conn:
            ids = self._write_rows(conn, ready, stamp)
            if ready:
                record_shard(
                    conn,
                    self.collection.id,
                    self.store,
                    self.fingerprint,
                    np.asarray(ids, dtype=np.int64),
                    [p.inspection.content_hash for p in ready],
                    np.stack([p.vector for p in ready]),
                    stamp,
                )
            for plan in touched:
                conn.execute(
                    update(db.images)
                    .where(db.images.c.id == plan.job.row.id)
                    .values(size=plan.inspection.size, mtime_ns=plan.inspection.mtime_ns)
                )
            self._write_failures(conn, [p.job.path for p in ready + touched], failed, stamp)
            if self.mode == "add" and ready:
                self.collection.bump(conn)
        # Committed: from here on these vectors are found through the shards.
        for plan, image_id in zip(ready, ids, strict=True):
            self.known.setdefault(plan.inspection.content_hash, int(image_id))
        self.fresh = {h: v for h, v in self.fresh.items() if h not in self.known}
        self._count(ready, touched, failed)
        self.ready, self.touched, self.failed = [], [], []
        self.report.timings["write"] += time.perf_counter() - start

    def _write_rows(self, conn: Connection, ready: list[Plan], stamp: datetime) -> list[int]:
        """The rows of the encoded files, inserted (replacing a changed file's row) or, re-indexing,
        updated in place; their ids, in the order of `ready`."""
        collection = self.collection
        if self.mode == "reencode":
            for plan in ready:
                if plan.inspection.content_hash != plan.job.row.content_hash:
                    values = _row_values(collection.id, plan, stamp)
                    conn.execute(update(db.images).where(db.images.c.id == plan.job.row.id).values(values))
            return [p.job.row.id for p in ready]
        replaced = [p.job.row.id for p in ready if p.job.row is not None]
        if replaced:
            collection.delete_images(conn, replaced)
        if not ready:
            return []
        # One INSERT for all rows, then their ids by path (unique in a collection): an INSERT that
        # returns ids in the rows' order runs one row at a time on SQLite (commits of 4,096 rows
        # were 19-30 % slower with it; bench/RESULTS.md).
        conn.execute(insert(db.images), [_row_values(collection.id, p, stamp) for p in ready])
        return collection.image_ids(conn, [p.job.path for p in ready])

    def _write_failures(self, conn: Connection, done: list[str], failed: list[Plan], stamp: datetime) -> None:
        """The failures of this batch recorded, and earlier ones of the files done (or failed again)
        cleared."""
        self.collection.forget_failures(conn, done + [p.job.path for p in failed])
        if failed:
            conn.execute(
                insert(db.index_failures), [_failure_values(self.collection.id, p, stamp) for p in failed]
            )

    def _count(self, ready: list[Plan], touched: list[Plan], failed: list[Plan]) -> None:
        report = self.report
        if self.mode == "add":
            report.added += sum(1 for p in ready if p.job.row is None)
            report.updated += sum(1 for p in ready if p.job.row is not None)
        report.touched += len(touched)
        report.failed += len(failed)
        report.failures.extend((p.job.path, p.reason) for p in failed)


def _row_values(collection_id: int, plan: Plan, stamp: datetime) -> dict:
    info = plan.inspection
    return {
        "collection_id": collection_id,
        "path": plan.job.path,
        "content_hash": info.content_hash,
        "size": info.size,
        "mtime_ns": info.mtime_ns,
        "width": info.width,
        "height": info.height,
        "taken_at": info.taken_at,
        "camera": info.camera,
        "gps_lat": info.gps_lat,
        "gps_lon": info.gps_lon,
        "indexed_at": stamp,
    }


def _failure_values(collection_id: int, plan: Plan, stamp: datetime) -> dict:
    info = plan.inspection or plan.failure  # a failed plan has one or the other
    return {
        "collection_id": collection_id,
        "path": plan.job.path,
        "size": info.size,
        "mtime_ns": info.mtime_ns,
        "reason": plan.reason,
        "failed_at": stamp,
    }


def jobs_for_files(
    entries: Iterable[FileEntry], existing: dict[str, ExistingRow], report: IndexReport
) -> list[Job]:
    """Files whose size or mtime differ from their row (or that have none)."""
    jobs = []
    for entry in entries:
        report.scanned += 1
        row = existing.get(entry.path)
        if row is not None and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            report.unchanged += 1
            continue
        jobs.append(Job(entry.path, row))
    return jobs


def record_shard(
    conn: Connection,
    collection_id: int,
    store: ShardStore,
    fingerprint: str,
    ids: np.ndarray,
    hashes: list[str],
    vectors: np.ndarray,
    created_at: datetime,
) -> str:
    """Write the vectors' shard file (durably), then name it in the transaction that adds their image rows:
    a crash before the commit leaves an orphan file, never a row without its vector."""
    name = store.write(ids, hashes, vectors)
    conn.execute(
        insert(db.shards).values(
            collection_id=collection_id,
            model_fingerprint=fingerprint,
            name=name,
            first_id=int(ids.min()),
            last_id=int(ids.max()),
            rows=len(ids),
            created_at=created_at,
        )
    )
    return name
