"""Indexing on a Ray cluster: an indexing run's reading, decoding and encoding spread over the
cluster's machines with Ray Data, while the process that started the run plans and commits as it
does alone (so a killed run resumes the same way, and no vector is committed twice).

    paths, in blocks -> CPU tasks: hash and header of each file; the files the run may need are
    decoded and resized to the model's input -> model actors: one per GPU, or CPU actors on half
    the cluster's cores where it has no GPU -> this process, in input order.

A file whose content is already indexed (its row's, or another indexed file's) is not decoded. A
file identical to another one of the same run is encoded twice and its second vector dropped: only
this process knows which came first.

Every node opens the files by the paths this process found, so they must be on a filesystem every
node sees at the same paths. A node that cannot open a file records the failure with its address.

Ray (and the model, in the tasks) is imported only in these functions, by a run given `--ray`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import pickle
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ground.errors import InputError
from indexer.decode import Failure, Inspection, decode_file, inspect_file

if TYPE_CHECKING:
    from model import Encoder

# Files per reading task: enough to amortise a task's start, few enough to spread a small run.
BLOCK = 32
# What a reading task did with a file.
SKIPPED, READY, FAILED = 0, 1, 2
# Read failures that, on a node other than this one, mean the file is not where that node looks.
_NOT_THERE = ("no such file or directory", "permission denied", "not a directory")


@dataclass(frozen=True)
class Encoded:
    """A file decoded, resized and encoded on the cluster."""

    vector: np.ndarray
    seconds: float  # decoding and resizing, in the task
    encode_seconds: float  # its share of its batch's time in the model actor


def hash_prefixes(hashes: Iterable[str]) -> np.ndarray:
    """The first 64 bits of content hashes, sorted: what the tasks check to skip decoding a file
    already indexed (a file whose prefix matches by chance is decoded by the caller instead)."""
    return np.unique(np.fromiter((int(h[:16], 16) for h in hashes), np.uint64))


def _known(prefixes: np.ndarray, digest: str) -> bool:
    prefix = np.uint64(int(digest[:16], 16))
    at = int(np.searchsorted(prefixes, prefix))
    return at < len(prefixes) and prefixes[at] == prefix


def _located(failure: Failure, node: str, home: str) -> Failure:
    if node == home or failure.reason not in _NOT_THERE:
        return failure
    reason = (
        f"{failure.reason} on Ray node {node}: --ray needs the files at the same paths on every node "
        "(a shared filesystem)"
    )
    return Failure(failure.path, reason, failure.size, failure.mtime_ns, failure.seconds)


def read_block(
    batch: dict[str, np.ndarray],
    image_size: int,
    preprocessing: dict,
    max_bytes: int,
    known: np.ndarray,
    home: str,
) -> dict[str, np.ndarray]:
    """A Ray task: inspect each file of the block, and decode and resize those the run may need."""
    import ray

    from model.encoder import prepare_for_model

    node = ray.util.get_node_ip_address()
    count = len(batch["path"])
    inspected, reasons = [], []
    status = np.full(count, SKIPPED, np.int8)
    seconds = np.zeros(count)
    pixels = np.zeros((count, image_size, image_size, 3), np.uint8)
    for i, (path, row_hash) in enumerate(
        zip(batch["path"].tolist(), batch["row_hash"].tolist(), strict=True)
    ):
        result = inspect_file(path, max_bytes)
        reason = ""
        if isinstance(result, Failure):
            result = _located(result, node, home)
        elif result.content_hash != row_hash and not _known(known, result.content_hash):
            decoded = decode_file(path, image_size, max_bytes)
            seconds[i] = decoded.seconds
            if isinstance(decoded, Failure):
                status[i], reason = FAILED, decoded.reason
            else:
                array, error = prepare_for_model(decoded.image, image_size, preprocessing)
                if error is None:
                    status[i], pixels[i] = READY, array
                else:
                    status[i], reason = FAILED, error[1]
        inspected.append(pickle.dumps(result))
        reasons.append(reason)
    return {
        "inspected": np.array(inspected, dtype=object),
        "status": status,
        "reason": np.array(reasons, dtype=object),
        "seconds": seconds,
        "pixels": pixels,
    }


class EncodeActor:
    """A Ray actor holding the model: encodes the files its blocks have ready."""

    def __init__(self, encoder: list, batch_size: int | None) -> None:
        import ray
        import torch

        cores = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cores)))  # this process is the actor's alone
        # The encoder comes as [object ref]: Ray resolves a reference given as a bare argument
        # only, and one copy in the object store serves every actor.
        self.encoder: Encoder = ray.get(encoder[0])
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = batch.pop("pixels")
        ready = batch["status"] == READY
        vectors = np.zeros((len(pixels), self.encoder.dim), np.float32)
        start = time.perf_counter()
        if ready.any():
            vectors[ready] = self.encoder.encode_prepared(pixels[ready], self.batch_size)
        share = np.where(ready, (time.perf_counter() - start) / max(1, int(ready.sum())), 0.0)
        return {**batch, "vector": vectors, "encode_seconds": share}


@contextlib.contextmanager
def connected(address: str) -> Iterator[None]:
    """Ray, connected to the cluster at `address` ("local": a new one on this machine) unless this
    process already is; disconnected afterwards if it was not."""
    import ray

    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except ConnectionError as err:
        raise InputError(f"--ray {address}: cannot connect to a Ray cluster there ({err})") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_cluster(address: str) -> None:
    """Fail at once where Ray is not installed, or nothing listens at `address` (host:port): Ray
    itself would retry for minutes."""
    if importlib.util.find_spec("ray") is None:
        raise InputError("--ray needs Ray: pip install -e .[ray]")
    if address in ("local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise InputError(
            f"--ray {address}: no Ray cluster answers there ({err}); give HOST:PORT of its head node, "
            "ray://HOST:PORT for Ray Client, auto for the one running on this machine, or no address "
            "to start one here"
        ) from None


def _actors() -> tuple[int, dict]:
    """How many model actors, and what each reserves: a GPU each, or else half the cores."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    cores = int(resources.get("CPU", 1))
    actors = max(1, cores // 8)
    return actors, {"num_cpus": max(1, cores // 2 // actors)}


def inspect_and_encode(
    paths: Sequence[str],
    row_hashes: Sequence[str | None],
    known: Iterable[str],
    encoder: Encoder,
    max_bytes: int,
    batch_size: int | None,
) -> Iterator[tuple[Inspection | Failure, Encoded | Failure | None]]:
    """For each path, in order: its inspection, and its vector, or why it could not be encoded, or
    None where it was not decoded (its content equals `row_hashes[i]` or a `known` hash, or it
    could not be read). Runs on the cluster this process is connected to (`connected`)."""
    import ray
    import ray.data

    if not paths:
        return
    context = ray.data.DataContext.get_current()
    log = logging.getLogger("ray.data")
    saved = (context.execution_options.preserve_order, context.enable_progress_bars, log.level)
    context.execution_options.preserve_order = True
    # The caller shows one bar for the whole run; Ray Data's own bars and plans would interleave.
    context.enable_progress_bars = False
    log.setLevel(logging.WARNING)
    items = [
        {"path": path, "row_hash": row_hash or ""} for path, row_hash in zip(paths, row_hashes, strict=True)
    ]
    actors, reserved = _actors()
    read_args = {
        "image_size": encoder.image_size,
        "preprocessing": encoder.config["preprocessing"],
        "max_bytes": max_bytes,
        "known": hash_prefixes(known),
        "home": ray.util.get_node_ip_address(),
    }
    try:
        dataset = (
            ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / BLOCK))
            .map_batches(read_block, batch_size=BLOCK, fn_kwargs=read_args, num_cpus=1)
            .map_batches(
                EncodeActor,
                batch_size=batch_size or 64,
                fn_constructor_kwargs={"encoder": [ray.put(encoder)], "batch_size": batch_size},
                compute=ray.data.ActorPoolStrategy(size=actors),
                **reserved,
            )
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            rows = zip(
                batch["inspected"],
                batch["status"],
                batch["reason"],
                batch["seconds"],
                batch["vector"],
                batch["encode_seconds"],
                strict=True,
            )
            for inspected, status, reason, seconds, vector, encode_seconds in rows:
                result = pickle.loads(inspected)
                if status == READY:
                    yield result, Encoded(vector, float(seconds), float(encode_seconds))
                elif status == FAILED:
                    yield result, Failure(result.path, reason, seconds=float(seconds))
                else:
                    yield result, None
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars, level = saved
        log.setLevel(level)
