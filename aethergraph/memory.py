"""memory(): durable events with provenance, queried through the index.

``record`` appends a ``memory_recorded`` event to the run's log (the source of truth) and returns
it; the index makes it queryable across runs and processes. Queries see everything recorded
before them, including by this node a moment ago.

Scopes: ``"run"`` (this run), ``"graph"`` (every run of this graph; the default, so a new run
sees what earlier runs of the same graph recorded) and ``"all"``.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import msgspec
import trio

from aethergraph.runtime import events as ev
from aethergraph.runtime.errors import AetherGraphError
from aethergraph.runtime.ids import derived_id
from aethergraph.runtime.store.writer import encode_error
from aethergraph.runtime.journal import _CANONICAL
from aethergraph.runtime.store.index import MEMORY_DECODER
from aethergraph.runtime.store.query import MemoryQuery
from aethergraph.runtime.store.vectors import pack, searcher

if TYPE_CHECKING:
    from aethergraph.runtime.engine import NodeHandle

SCOPES = ("run", "graph", "all")


class NoEmbedder(AetherGraphError):
    """``memory().search`` was called with no embedder bound in this runtime."""


@attrs.define(eq=False)
class EmbedderBinding:
    """An embedder bound to a runtime: ``embed(text)`` (sync or async) -> sequence of floats."""

    name: str
    embed: Callable[[str], Any]
    kinds: frozenset[str]
    is_async: bool


# Bindings per runtime (not per node: every node of the runtime records and searches with the
# same embedder); weak, so a closed runtime takes its bindings with it.
_BINDINGS: weakref.WeakKeyDictionary[Any, EmbedderBinding] = weakref.WeakKeyDictionary()


def _binding(node: NodeHandle) -> EmbedderBinding | None:
    return _BINDINGS.get(node.runtime)


def embed_text(event: ev.MemoryRecorded) -> str:
    """What of a record is embedded: its ``text``, else its data (a string as it is, anything
    else as canonical JSON)."""
    if event.text:
        return event.text
    data = event.data
    if isinstance(data, str):
        return data
    return _CANONICAL.encode(data).decode() if data is not None else event.kind
# A full checkpoint (a chance for other tasks to run) every this many records; in between only
# cancellation is checked, which is what keeps a tight record() loop fast.
_YIELD_EVERY = 64
# ...or sooner when records are large: no other task (the log writer among them) should wait
# more than this for its turn.
_YIELD_AFTER_S = 0.002
_clock = time.perf_counter


_blake2b = hashlib.blake2b


def _plain(e: ev.MemoryRecorded) -> bool:
    """Does the record carry only a kind and data (every other recorded field its default)?"""
    return not (e.tags or e.entities or e.metrics or e.sources or e.severity != 2 or e.stage
                or e.topic or e.text or e.inputs_ref is not None or e.outputs_ref is not None
                or e.inputs is not None or e.outputs is not None)


def _recorded(e: ev.MemoryRecorded) -> tuple:
    """Every field of a record that is part of what it records (its id's content), in a fixed
    order: not where (run, graph, node: the id's prefix), when (seq, ts), the id itself, or the
    embedding (derived from the record)."""
    return (e.kind, e.data, e.tags, e.entities, e.severity, e.stage, e.topic, e.text,
            e.inputs_ref, e.outputs_ref, e.inputs, e.outputs, e.metrics, e.sources)


def scope_filter(node: NodeHandle, scope: str) -> dict[str, str]:
    """Index filters for a scope as seen from ``node``: its run, its graph, or everything."""
    if scope == "run":
        return {"run_id": node.run.run_id}
    if scope == "graph":
        return {"graph": node.run.graph}
    if scope == "all":
        return {}
    raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")


def _clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    if not metrics:
        return {}
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"metric {k!r} must be a number, got {type(v).__name__}")
        if not math.isfinite(v):
            raise ValueError(f"metric {k!r} must be finite, got {v!r}")
        out[str(k)] = float(v)
    return out


def _str_tuple(name: str, values: Sequence[Any]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list of strings, not a string")
    return tuple(str(v) for v in values)


class Memory:
    def __init__(self, node: NodeHandle) -> None:
        self._node = node
        self._count = 0
        self._id_prefix: str | None = None
        # Digests of what this node recorded (the id's occurrence count): a set for the first
        # occurrence, a dict only for repeats — a set insert is the cheaper of the two, and
        # nearly every record is the first of its kind (B3: ~90 ns less a record).
        self._seen: set[bytes] = set()
        self._repeats: dict[bytes, int] = {}
        self._last_yield = _clock()
        # The runtime's log writer, looked up once (a property chain per record otherwise).
        self._writer = node.run.runtime.writer

    async def record(
        self,
        kind: str,
        data: Any = None,
        tags: Sequence[str] | None = None,
        entities: Sequence[str] | None = None,
        severity: int = 2,
        stage: str | None = None,
        inputs_ref: Any = None,
        outputs_ref: Any = None,
        metrics: Mapping[str, float] | None = None,
        sources: Sequence[str] | None = None,
        *,
        text: str | None = None,
        topic: str | None = None,
        inputs: Any = None,
        outputs: Any = None,
    ) -> ev.MemoryRecorded:
        """Record one event; returns it (``event_id``, ``ts``, ``run_id``, ``node_id``...).

        Returns once the event is as durable as the runtime's durability setting promises.
        """
        if not isinstance(kind, str) or not kind:
            raise ValueError("kind must be a non-empty string")
        node = self._node
        run = node.run
        self._count += 1
        event = ev.MemoryRecorded(
            run_id=run.run_id,
            node=node.path,
            event_id="",
            kind=kind,
            graph=run.graph,
            data=data,
        )
        # Only what differs from the defaults is set: most records carry a kind and data.
        plain = not (tags or entities or metrics or sources or severity != 2 or stage or topic
                     or text or inputs_ref is not None or outputs_ref is not None
                     or inputs is not None or outputs is not None)
        if not plain:
            if tags:
                event.tags = _str_tuple("tags", tags)
            if entities:
                event.entities = _str_tuple("entities", entities)
            if metrics:
                event.metrics = _clean_metrics(metrics)
            if sources:
                event.sources = _str_tuple("sources", sources)
            if severity != 2:
                event.severity = int(severity)
            if stage:
                event.stage = stage
            if topic:
                event.topic = topic
            if text:
                event.text = text
            if inputs_ref is not None:
                event.inputs_ref = inputs_ref
            if outputs_ref is not None:
                event.outputs_ref = outputs_ref
            if inputs is not None:
                event.inputs = inputs
            if outputs is not None:
                event.outputs = outputs
            # Which form the id hashes is decided by the event as recorded (severity="2" is 2).
            plain = _plain(event)
        # The id derives from the node's key and what is recorded (plus the occurrence among
        # identical records), never from when: concurrent records in one node keep their ids
        # when the node is re-executed (resume). The node part (run, node key; the graph is the
        # run's) is hashed once per node into the prefix; per record only what is recorded is:
        # its kind and data as a canonical 2-array, or, when any other field differs from its
        # default, all of them as a 14-array (a different length: the two forms never collide).
        if self._id_prefix is None:
            self._id_prefix = derived_id("ev", run.run_id, node.key) + "-"
        try:
            canonical = _CANONICAL.encode((kind, data) if plain else _recorded(event))
        except Exception as exc:  # RecursionError included: data nested too deep
            raise encode_error(event, exc) from None
        digest = _blake2b(canonical, digest_size=8).digest()
        # Occurrences among identical records, keyed by the 8 digest bytes (compact: a node may
        # record millions; the dict is this process's only, its own hashing never leaks out).
        seen = self._seen
        if digest in seen:
            repeats = self._repeats
            n = repeats[digest] = repeats.get(digest, 1) + 1
            event.event_id = f"{self._id_prefix}{digest.hex()}-{n}"
        else:
            seen.add(digest)
            event.event_id = self._id_prefix + digest.hex()
        if run.journal is not None:
            earlier = run.replayed("memory", event.event_id)
            if earlier is not None:  # recorded before a crash; this re-execution reuses it
                await trio.lowlevel.checkpoint()
                return earlier
        if _BINDINGS.data:  # the mapping's own dict: len() of a WeakKeyDictionary costs more
            binding = _BINDINGS.get(node.runtime)
            if binding is not None and kind in binding.kinds:
                # After the id: the vector is derived from the record, not part of what it is.
                event.embedding = ev.Embedding(model=binding.name, vector=await _embed(binding, embed_text(event)))
        ticket = run.append(event)
        writer = self._writer
        if writer.durability == "strict":
            await writer.wait_durable(ticket)
        else:
            if writer.must_wait():  # the oldest unwritten is too old, or too many are
                await writer.wait_room()
            elif self._count % _YIELD_EVERY == 0 or _clock() - self._last_yield > _YIELD_AFTER_S:
                self._last_yield = _clock()
                await trio.lowlevel.checkpoint()
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
        return event

    async def write_result(
        self,
        topic: str,
        inputs: Any = None,
        outputs: Any = None,
        tags: Sequence[str] | None = None,
        metrics: Mapping[str, float] | None = None,
        message: str | None = None,
    ) -> ev.MemoryRecorded:
        """Record a tool's result under ``topic`` (kind ``tool_result``)."""
        return await self.record(
            "tool_result", data={"inputs": inputs, "outputs": outputs}, tags=tags, metrics=metrics,
            topic=topic, text=message, inputs=inputs, outputs=outputs,
        )

    # -- vector search (optional RAG) ---------------------------------------------------------

    def bind_embedder(
        self, embedder: Any, *, kinds: Sequence[str], name: str | None = None,
    ) -> EmbedderBinding:
        """Embed records of ``kinds`` from now on (every node of this runtime), for ``search``.

        ``embedder``: a callable ``fn(text) -> sequence of floats`` (sync: run in a worker thread;
        or async), an object with such an ``embed`` method, or the name of a registered service
        that is one. ``name`` (default: the function's or service's name) is recorded with each
        vector; search compares only vectors of the same name, so give a new name when the model
        changes. Nothing is downloaded: the embedder is yours. Binding again replaces.
        """
        if isinstance(kinds, str):
            kinds = [kinds]
        if not kinds:
            raise ValueError("bind_embedder needs the kinds to embed, e.g. kinds=['note']")
        label = name
        if isinstance(embedder, str):
            services = self._node.runtime.services
            if embedder not in services:
                raise ValueError(
                    f"no registered service {embedder!r} to embed with; registered: "
                    f"{', '.join(sorted(services)) or 'none'}"
                )
            label = label or embedder
            embedder = services[embedder]
        fn = getattr(embedder, "embed", embedder)
        if not callable(fn):
            raise TypeError(f"an embedder is a callable fn(text) -> floats (or has .embed), got {type(embedder).__name__}")
        label = label or getattr(embedder, "name", None) or getattr(fn, "__qualname__", None) or "embedder"
        binding = EmbedderBinding(str(label), fn, frozenset(map(str, kinds)),
                                  inspect.iscoroutinefunction(fn))
        _BINDINGS[self._node.runtime] = binding
        return binding

    async def search(
        self,
        text: str,
        k: int = 10,
        *,
        kinds: Sequence[str] | None = None,
        scope: str = "graph",
        with_scores: bool = False,
    ) -> list[Any]:
        """The ``k`` records nearest ``text`` by the bound embedder (cosine similarity), best
        first: among records of ``kinds`` (default: every embedded kind) in ``scope``. With
        ``with_scores``: ``(score, event)`` pairs. Only records of bound kinds have vectors;
        full-text search (``query(text=...)``) needs no embedder and stays the fast path."""
        binding = _binding(self._node)
        if binding is None:
            raise NoEmbedder(
                "memory().search needs an embedder: bind one first with "
                "context.memory().bind_embedder(fn, kinds=[...]) (fn(text) -> list of floats), "
                "or search words with memory().query(text=...)"
            )
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if isinstance(kinds, str):
            kinds = [kinds]
        filters = scope_filter(self._node, scope)
        query = await _embed(binding, str(text))
        rt = self._node.runtime
        await rt.writer.wait_durable()  # see what this process recorded a moment ago

        def find() -> list[tuple[float, ev.MemoryRecorded]]:
            s = searcher(rt.index)
            hits = s.nearest(binding.name, query, k, kinds=kinds, run_id=filters.get("run_id"),
                             graph=filters.get("graph"))
            bodies = s.records([key for _, key in hits])
            return [(score, MEMORY_DECODER.decode(b)) for (score, _), b in zip(hits, bodies)]

        found = await trio.to_thread.run_sync(find)
        return found if with_scores else [e for _, e in found]

    # -- queries ------------------------------------------------------------------------------

    async def query(
        self, query: MemoryQuery | None = None, /, *, scope: str = "graph", **filters: Any
    ) -> list[ev.MemoryRecorded]:
        """Events matching every given filter, newest first (``order="asc"`` for oldest).

        The filters are ``MemoryQuery``'s fields (``kinds``, ``tags``, ``entities``, ``run_id``,
        ``node``, ``topic``, ``since``, ``until``, ``text``, ``limit``, ``order``), given here
        or as a ``MemoryQuery``; ``scope`` applies unless a ``run_id`` is given."""
        q = MemoryQuery(**filters) if query is None else msgspec.structs.replace(query, **filters)
        if q.run_id is None:
            q = msgspec.structs.replace(q, **scope_filter(self._node, scope))
        rt = self._node.runtime
        await rt.writer.wait_durable()  # read what this process recorded a moment ago
        return await trio.to_thread.run_sync(rt.index.memory, q)

    async def recent(
        self, kinds: Sequence[str] | None = None, limit: int = 50, *, scope: str = "graph"
    ) -> list[ev.MemoryRecorded]:
        """The ``limit`` most recent events (of ``kinds``), oldest first."""
        events = await self.query(kinds=kinds, limit=limit, scope=scope)
        events.reverse()
        return events

    async def recent_data(
        self, kinds: Sequence[str] | None = None, limit: int = 50, *, scope: str = "graph"
    ) -> list[Any]:
        return [e.data for e in await self.recent(kinds, limit, scope=scope)]

    async def last_by_name(self, name: str, *, scope: str = "graph") -> ev.MemoryRecorded | None:
        """The most recent event of kind ``name`` (or recorded under topic ``name``)."""
        found = await self.query(kinds=[name], limit=1, scope=scope)
        if not found:
            found = await self.query(topic=name, limit=1, scope=scope)
        return found[0] if found else None

    async def latest_refs_by_kind(
        self, kind: str, limit: int = 50, *, scope: str = "graph"
    ) -> list[Any]:
        """The artifact refs (``outputs_ref``, else ``inputs_ref``) of the latest events of
        ``kind``, newest first."""
        refs = []
        for e in await self.query(kinds=[kind], limit=limit, scope=scope):
            ref = e.outputs_ref if e.outputs_ref is not None else e.inputs_ref
            if ref is not None:
                refs.append(ref)
        return refs

    async def last_outputs_by_topic(self, topic: str, *, scope: str = "graph") -> Any:
        """The outputs of the latest ``write_result`` under ``topic`` (None if none)."""
        found = await self.query(kinds=["tool_result"], topic=topic, limit=1, scope=scope)
        return found[0].outputs if found else None


async def _embed(binding: EmbedderBinding, text: str) -> bytes:
    """The bound embedder's vector for ``text``, checked and packed (unit length, float32)."""
    if binding.is_async:
        vector = await binding.embed(text)
    else:
        vector = await trio.to_thread.run_sync(binding.embed, text)
    try:
        return pack(vector)
    except ValueError as exc:
        raise ValueError(f"embedder {binding.name!r}: {exc}") from None
