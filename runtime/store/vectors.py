"""The vector index of memory: nearest records to a query vector, derived from the logs.

A memory record of a kind bound to an embedder carries its vector (``MemoryRecorded.embedding``:
unit length, float32). The index keeps one row per such record in ``memory_vectors`` — filled by
the same ingest as every other table, emptied and refilled by ``ag index rebuild`` — so the
vectors are as durable and as rebuildable as the log they come from; no embedder is ever called
to rebuild them.

Search is exact (brute force): cosine similarity is a dot product of unit vectors. SQLite
extensions (sqlite-vec) cannot be loaded by the Python this project runs on (its ``sqlite3`` is
built without ``enable_load_extension``), so there is no ANN index. With numpy installed (the
``rag`` extra) a reader keeps each model's vectors as one float32 matrix, read once and then
only the rows added since, and a query is one matrix-vector product; without numpy the same
scan runs in plain Python, which suits a few thousand records.
"""

from __future__ import annotations

import heapq
import math
import sqlite3
import sys
import threading
from array import array
from collections.abc import Sequence
from operator import mul
from typing import Any

# numpy is optional (the `rag` extra) and costs ~150 ms to import: it loads the first time a
# vector is read or searched, not when the index module loads (a documented lazy spot, like the
# package's exports). ``_np`` is the module once loaded, None when it is not installed (tests
# force None for the plain-Python scan).
_UNLOADED: Any = object()
_np: Any = _UNLOADED


def _numpy() -> Any:
    global _np
    if _np is _UNLOADED:
        try:
            import numpy
        except ImportError:  # pragma: no cover - the rag extra not installed
            numpy = None
        _np = numpy
    return _np

VECTORS_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_vectors(
    seq INTEGER PRIMARY KEY,   -- insertion order: a reader's cache reads only rows past its last
    id INTEGER NOT NULL,       -- the record's key in ``memory``
    model INTEGER NOT NULL,    -- names: the embedder's name
    kind INTEGER NOT NULL,
    run INTEGER NOT NULL,
    graph INTEGER NOT NULL,
    vec BLOB NOT NULL          -- float32, little-endian, unit length
);
CREATE INDEX IF NOT EXISTS memory_vectors_model ON memory_vectors(model, seq);
"""

_LITTLE = sys.byteorder == "little"


def pack(vector: Sequence[float]) -> bytes:
    """``vector`` scaled to unit length, as float32 little-endian bytes; ValueError for an
    empty, zero or non-finite vector (the embedder's output is checked, not trusted)."""
    try:
        values = [float(v) for v in vector]
    except (TypeError, ValueError):
        raise ValueError(f"an embedding must be a sequence of numbers, got {type(vector).__name__}") from None
    if not values:
        raise ValueError("the embedder returned an empty vector")
    norm = math.sqrt(math.fsum(v * v for v in values))
    if not math.isfinite(norm):
        raise ValueError("the embedder returned a vector with a non-finite value")
    if norm == 0.0:
        raise ValueError("the embedder returned a zero vector (nothing to compare by direction)")
    arr = array("f", (v / norm for v in values))
    if not _LITTLE:
        arr.byteswap()
    return arr.tobytes()


def unpack(blob: bytes) -> array:
    arr = array("f")
    arr.frombytes(blob)
    if not _LITTLE:
        arr.byteswap()
    return arr


def vector_row(key: int, model_id: int, kind_id: int, run_id: int, graph_id: int, blob: bytes) -> tuple:
    return (key, model_id, kind_id, run_id, graph_id, blob)


def insert_rows(c: sqlite3.Connection, rows: list[tuple]) -> None:
    c.executemany(
        "INSERT INTO memory_vectors(id, model, kind, run, graph, vec) VALUES (?,?,?,?,?,?)", rows
    )


class _ModelCache:
    """One model's vectors as a reader last read them."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.last_seq = 0
        self.last_id = 0  # the memory key at last_seq: a rebuild that reused seqs is noticed
        self.ids: list[int] = []
        self.kinds: list[int] = []
        self.runs: list[int] = []
        self.graphs: list[int] = []
        self.vecs: list[array] = []  # pure Python
        # numpy: rows in a buffer that doubles when full (new rows are copied in once; the
        # vectors are never held twice), and the metadata arrays, rebuilt when rows arrive.
        self.buf: Any = None
        self.n = 0
        self.meta: Any = None

    def append_np(self, blobs: list[bytes]) -> None:
        np = _numpy()
        new = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, self.dim)
        need = self.n + len(new)
        if self.buf is None or need > len(self.buf):
            grown = np.empty((max(need, 2 * (len(self.buf) if self.buf is not None else 0), 1024), self.dim),
                             dtype="<f4")
            if self.n:
                grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n:need] = new
        self.n = need
        self.meta = None


class VectorSearch:
    """Exact nearest-neighbour search over ``memory_vectors`` for one index (reader side)."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._models: dict[int, _ModelCache] = {}

    def _refresh(self, model_id: int, dim: int) -> _ModelCache:
        cache = self._models.get(model_id)
        if cache is not None:
            check = self.index._read(
                "SELECT id FROM memory_vectors WHERE model=? AND seq=?", (model_id, cache.last_seq)
            )
            if cache.last_seq and (not check or check[0][0] != cache.last_id):
                cache = None  # rebuilt (or emptied) since: read it all again
        if cache is None or cache.dim != dim:
            cache = self._models[model_id] = _ModelCache(dim)
        rows = self.index._read(
            "SELECT seq, id, kind, run, graph, vec FROM memory_vectors WHERE model=? AND seq>?"
            " ORDER BY seq",
            (model_id, cache.last_seq),
        )
        if not rows:
            return cache
        blobs = []
        for seq, key, kind, run, graph, blob in rows:
            if len(blob) != 4 * dim:
                continue  # another dimension under the same name: not comparable, skipped
            cache.ids.append(key)
            cache.kinds.append(kind)
            cache.runs.append(run)
            cache.graphs.append(graph)
            if _numpy() is not None:
                blobs.append(blob)
            else:
                cache.vecs.append(unpack(blob))
        if blobs:
            cache.append_np(blobs)
        cache.last_seq, cache.last_id = rows[-1][0], rows[-1][1]
        return cache

    def nearest(
        self,
        model: str,
        query: bytes,
        k: int,
        *,
        kinds: Sequence[str] | None = None,
        run_id: str | None = None,
        graph: str | None = None,
    ) -> list[tuple[float, int]]:
        """(score, memory key) of the ``k`` records nearest ``query`` (packed, unit length),
        best first."""
        names = [model, *(kinds or ()), run_id, graph]
        ids = self.index._name_ids(names)
        if model not in ids:
            return []
        want_kinds = {ids[x] for x in (kinds or ()) if x in ids}
        if kinds and not want_kinds:
            return []
        want_run = ids.get(run_id, -1) if run_id else None
        want_graph = ids.get(graph, -1) if graph else None
        dim = len(query) // 4
        with self._lock:
            cache = self._refresh(ids[model], dim)
            if not cache.ids:
                return []
            if _numpy() is not None:
                return self._nearest_np(cache, query, k, want_kinds, want_run, want_graph)
            return self._nearest_py(cache, query, k, want_kinds, want_run, want_graph)

    @staticmethod
    def _nearest_np(cache, query, k, want_kinds, want_run, want_graph):
        np = _numpy()
        if cache.meta is None:
            cache.meta = (np.asarray(cache.kinds), np.asarray(cache.runs), np.asarray(cache.graphs),
                          np.asarray(cache.ids))
        kinds_a, runs_a, graphs_a, ids_a = cache.meta
        q = np.frombuffer(query, dtype="<f4")
        mask = None
        if want_kinds:
            mask = np.isin(kinds_a, list(want_kinds))
        if want_run is not None:
            m = runs_a == want_run
            mask = m if mask is None else mask & m
        if want_graph is not None:
            m = graphs_a == want_graph
            mask = m if mask is None else mask & m
        # One product over every row (contiguous, BLAS) is cheaper than copying out the
        # rows in scope; rows out of scope are then ruled out by score.
        scores = cache.buf[: cache.n] @ q
        if mask is not None:
            n_in = int(mask.sum())
            if not n_in:
                return []
            scores = np.where(mask, scores, -np.inf)
            k = min(k, n_in)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(float(scores[t]), int(ids_a[t])) for t in top]

    @staticmethod
    def _nearest_py(cache, query, k, want_kinds, want_run, want_graph):
        q = unpack(query)
        ids, kinds, runs, graphs, vecs = cache.ids, cache.kinds, cache.runs, cache.graphs, cache.vecs

        def scored():
            for i, v in enumerate(vecs):
                if want_kinds and kinds[i] not in want_kinds:
                    continue
                if want_run is not None and runs[i] != want_run:
                    continue
                if want_graph is not None and graphs[i] != want_graph:
                    continue
                yield sum(map(mul, q, v)), ids[i]

        return heapq.nlargest(k, scored(), key=lambda t: t[0])

    def records(self, keys: Sequence[int]) -> list[bytes]:
        """The log lines of the memory records ``keys``, in that order."""
        if not keys:
            return []
        rows = self.index._read(
            f"SELECT id, file, off, len FROM memory WHERE id IN ({','.join('?' * len(keys))})", keys
        )
        where = {r[0]: r[1:] for r in rows}
        found = [k for k in keys if k in where]
        return self.index._bodies([where[k] for k in found])


def searcher(index: Any) -> VectorSearch:
    """The index's searcher (one per Index object: its cache lives as long as the index)."""
    s = getattr(index, "_vector_search", None)
    if s is None:
        s = index._vector_search = VectorSearch(index)
    return s
