"""The FAISS index over a collection's vectors: chosen by size, built from the shards, saved atomically.

Layouts (inner product on unit vectors, so scores are cosine similarities):
- "flat": exact search (IndexFlatIP) below FLAT_LIMIT vectors, or at any size on a GPU.
- "ivf": above it, IVF (an exact coarse quantizer up to 4096 lists, HNSW beyond) with 4-bit
  fast-scan PQ codes finds candidates, then an 8-bit copy of every vector re-ranks them
  (IndexRefine). The re-ranking is what keeps recall@10 high for text queries, whose top scores
  lie close together; see bench/bench_index.py.

Every layout sits in an IndexIDMap2, so FAISS labels are the images' row ids. Rows deleted after a
build stay in an IVF index as dead entries (IndexRefine cannot remove), are dropped by the search
(which checks every hit against the database) and go at the next rebuild.

`index.json` records the layout, its search parameters and the state the index reflects (model
fingerprint, database generation, vector count and id sum, largest id, dead entries); the index
is rebuilt from the shards whenever that record does not match the database.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from indexer.shards import atomic_write, fsync_dir

# Exact search reads every vector per query: at 50k 768-d vectors that is ~10 ms on 2 cores.
FLAT_LIMIT = 50_000
TRAIN_PER_LIST = 24
KMEANS_ITERATIONS = 12
NPROBE_DIVISOR = 16  # search a 16th of the lists: recall@10 0.95 at 1M for text-like queries
K_FACTOR = 32
REBUILD_GROWTH = 4.0  # an IVF index trained on n vectors is retrained once the collection has 4n
REBUILD_DEAD = 0.2  # rebuild once a fifth of the entries are dead
INDEX_JSON = "index.json"
STATE_VERSION = 1

VectorChunks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return get() if get is not None else 0


@dataclass(frozen=True)
class Layout:
    kind: str  # "flat" | "ivf"
    factory: str
    nprobe: int = 0
    k_factor: int = 0

    @property
    def summary(self) -> str:
        if self.kind == "flat":
            return "exact (flat inner product)"
        return f"{self.factory}, nprobe={self.nprobe}, k_factor={self.k_factor}"


def choose_layout(n: int, dim: int, gpus: int | None = None) -> Layout:
    gpus = gpu_count() if gpus is None else gpus
    # On a GPU exact search over millions of vectors takes about a millisecond.
    if n < FLAT_LIMIT or (gpus > 0 and n * dim * 4 < 8 << 30):
        return Layout("flat", "Flat")
    nlist = 1 << max(4, min(16, round(math.log2(4 * math.sqrt(n)))))
    # 4-bit codes of 2-d sub-vectors: fast-scan PQ accurate enough that re-ranking K_FACTOR x k
    # candidates recovers the exact top k (see bench/bench_index.py --sweep).
    subquantizers = dim // 2 if dim % 2 == 0 else dim
    # Up to 4096 lists an exact coarse quantizer is cheap per query (and exact); beyond, assigning
    # millions of vectors to lists at build time needs an HNSW graph over the centroids.
    quantizer = "" if nlist <= 4096 else "_HNSW32"
    factory = f"IVF{nlist}{quantizer},PQ{subquantizers}x4fs,Refine(SQ8)"
    return Layout("ivf", factory, nprobe=min(nlist, max(8, nlist // NPROBE_DIVISOR)), k_factor=K_FACTOR)


@dataclass
class IndexState:
    model_fingerprint: str
    dim: int
    layout: Layout
    file: str = ""
    generation: int = 0  # the collection's database generation this index reflects
    ntotal: int = 0  # entries, dead ones included
    id_sum: int = 0  # sum of the live ids (a cheap check against the database)
    max_id: int = 0  # ids above this were committed after the index was last brought up to date
    dead: int = 0
    tombstone_seq: int = 0  # deletions up to this sequence number are applied
    built_for: int = 0  # live vectors when the layout was chosen and trained
    built_at: float = 0.0
    bytes_per_vector: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def live(self) -> int:
        return self.ntotal - self.dead

    def to_json(self) -> dict:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict) -> IndexState:
        data = dict(data)
        data.pop("version", None)
        data["layout"] = Layout(**data["layout"])
        return cls(**data)


class VectorIndex:
    """A FAISS index whose labels are image ids, with the state record that goes in index.json."""

    def __init__(self, index: faiss.IndexIDMap2, state: IndexState):
        self.index = index
        self.state = state
        self._gpu_index: faiss.Index | None = None
        self._gpu_tried = False
        self._positions: tuple[np.ndarray, np.ndarray] | None = None

    # ----- building -----
    @classmethod
    def build(
        cls, chunks: VectorChunks, count: int, dim: int, model_fingerprint: str, layout: Layout | None = None
    ) -> VectorIndex:
        """Index the vectors that `chunks()` yields as (ids, vectors); `count` of them in all."""
        layout = layout or choose_layout(count, dim)
        inner = faiss.index_factory(dim, layout.factory, faiss.METRIC_INNER_PRODUCT)
        if layout.kind == "ivf":
            ivf = faiss.extract_index_ivf(inner)
            ivf.cp.niter = KMEANS_ITERATIONS
            ivf.cp.min_points_per_centroid = 5  # small collections train on what there is, quietly
            inner.train(_training_sample(chunks, count, TRAIN_PER_LIST * ivf.nlist, dim))
        index = faiss.IndexIDMap2(inner)
        state = IndexState(model_fingerprint, dim, layout, built_for=count, built_at=time.time())
        built = cls(index, state)
        for ids, vectors in chunks():
            built.add(ids, vectors)
        built.state.bytes_per_vector = built._bytes_per_vector()
        return built

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.state.ntotal = int(self.index.ntotal)
        self.state.id_sum += int(ids.sum())
        self.state.max_id = max(self.state.max_id, int(ids.max()))
        self._changed()

    def remove(self, ids: np.ndarray) -> None:
        """Take `ids` out of search (ids not in the index are ignored); IVF layouts keep them as dead
        entries. Each id must be removed once: the database's deletion log guarantees that."""
        if len(ids) == 0:
            return
        _, present = self._positions_of(np.ascontiguousarray(ids, dtype=np.int64))
        if self.state.layout.kind == "flat":
            self.index.remove_ids(faiss.IDSelectorBatch(present))
            self.state.ntotal = int(self.index.ntotal)
        else:
            self.state.dead += len(present)
        self.state.id_sum -= int(present.sum())
        self._changed()

    def _changed(self) -> None:
        self._gpu_index = None
        self._gpu_tried = False
        self._positions = None

    def needs_rebuild(self, live: int) -> str | None:
        """Why this index should be rebuilt for a collection of `live` vectors, or None."""
        layout = self.state.layout
        wanted = choose_layout(live, self.state.dim)
        if layout.kind != wanted.kind and not (layout.kind == "ivf" and live >= FLAT_LIMIT // 2):
            return f"{live} vectors call for the {wanted.kind} layout"
        if layout.kind == "ivf" and live > REBUILD_GROWTH * max(1, self.state.built_for):
            return f"grown from {self.state.built_for} to {live} vectors since training"
        if self.state.ntotal and self.state.dead > REBUILD_DEAD * self.state.ntotal:
            return f"{self.state.dead} of {self.state.ntotal} entries are deleted images"
        return None

    def _bytes_per_vector(self) -> float:
        if not self.index.ntotal:
            return 0.0
        return float(faiss.serialize_index(self.index).nbytes) / self.index.ntotal

    # ----- searching -----
    def search(self, queries: np.ndarray, k: int, widen: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids of -1 pad short results. Dead ids may appear.
        An IVF index searches `widen` times its usual number of lists (see `can_widen`)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, self.index.ntotal))
        if self.index.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        gpu = self._gpu()
        if gpu is not None:
            return gpu.search(queries, k)
        layout = self.state.layout
        if layout.kind != "ivf":
            return self.index.search(queries, k)
        nprobe = min(self._nlist(), layout.nprobe * widen)
        quantizer = None
        if "HNSW" in layout.factory.split(",")[0]:
            # An HNSW coarse quantizer must look at more than nprobe centroids: with its default
            # efSearch it misses lists that hold true neighbours and recall stalls near 0.8.
            quantizer = faiss.SearchParametersHNSW(efSearch=2 * nprobe)
        ivf = faiss.SearchParametersIVF(nprobe=nprobe, quantizer_params=quantizer)
        params = faiss.IndexRefineSearchParameters(k_factor=float(layout.k_factor), base_index_params=ivf)
        return self.index.search(queries, k, params=params)

    def _nlist(self) -> int:
        return int(faiss.extract_index_ivf(self.index.index).nlist)

    def can_widen(self, widen: int) -> bool:
        """Whether searching `widen` times more lists would reach entries the search did not see
        (a deep page, or a filter that rejects most hits, can exhaust the lists searched)."""
        return self.state.layout.kind == "ivf" and self.state.layout.nprobe * widen < self._nlist()

    def score_ids(self, query: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of `query` against the stored vectors of `ids` (exact for flat, 8-bit for IVF).
        Returns (ids found in the index, their scores)."""
        ids = np.asarray(ids, dtype=np.int64)
        positions, found = self._positions_of(ids)
        if len(positions) == 0:
            return found, np.zeros(0, np.float32)
        store = self._exact_store()
        vectors = store.reconstruct_batch(positions)
        return found, vectors @ np.asarray(query, dtype=np.float32).reshape(-1)

    def _exact_store(self) -> faiss.Index:
        inner = faiss.downcast_index(self.index.index)
        if isinstance(inner, faiss.IndexRefine):
            return faiss.downcast_index(inner.refine_index)
        return inner

    def _positions_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._positions is None:
            id_map = faiss.vector_to_array(self.index.id_map)
            order = np.argsort(id_map, kind="stable")
            self._positions = (id_map[order], order)
        sorted_ids, order = self._positions
        where = np.searchsorted(sorted_ids, ids)
        where = np.clip(where, 0, max(0, len(sorted_ids) - 1))
        hit = (sorted_ids[where] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
        return order[where[hit]].astype(np.int64), ids[hit]

    def _gpu(self) -> faiss.Index | None:
        if self._gpu_tried:
            return self._gpu_index
        self._gpu_tried = True
        if self.state.layout.kind == "flat" and gpu_count() > 0 and hasattr(faiss, "index_cpu_to_all_gpus"):
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
            except RuntimeError:  # out of GPU memory or an unsupported build: search on the CPU
                self._gpu_index = None
        return self._gpu_index

    # ----- files -----
    def save(self, folder: Path) -> None:
        """Write the index under a fresh name, then index.json pointing at it, then drop the old file."""
        folder.mkdir(parents=True, exist_ok=True)
        old = self.state.file
        self.state.file = f"index-{uuid.uuid4().hex[:12]}.faiss"
        atomic_write(folder / self.state.file, lambda tmp: faiss.write_index(self.index, str(tmp)))
        text = json.dumps(self.state.to_json(), indent=2)
        atomic_write(folder / INDEX_JSON, lambda tmp: tmp.write_text(text))
        for stale in folder.glob("index-*.faiss"):
            if stale.name != self.state.file:
                stale.unlink(missing_ok=True)
        if old and old != self.state.file:
            fsync_dir(folder)

    @classmethod
    def load(cls, folder: Path) -> VectorIndex | None:
        """The saved index, or None when there is none or it cannot be read (it is rebuilt then)."""
        try:
            state = IndexState.from_json(json.loads((folder / INDEX_JSON).read_text()))
            index = faiss.read_index(str(folder / state.file))
        except (OSError, ValueError, TypeError, KeyError, RuntimeError):
            return None
        if not isinstance(index, faiss.IndexIDMap2) or index.ntotal != state.ntotal:
            return None
        return cls(index, state)

    @staticmethod
    def saved_file(folder: Path) -> str | None:
        try:
            return json.loads((folder / INDEX_JSON).read_text()).get("file")
        except (OSError, ValueError):
            return None


def _training_sample(chunks: VectorChunks, count: int, wanted: int, dim: int) -> np.ndarray:
    """A uniform random sample of about `wanted` vectors, drawn in one pass over the chunks."""
    rng = np.random.default_rng(0)
    keep = min(1.0, wanted / max(1, count))
    parts = []
    for _, vectors in chunks():
        parts.append(vectors[rng.random(len(vectors)) < keep] if keep < 1 else vectors)
    sample = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    return np.ascontiguousarray(sample, dtype=np.float32)
