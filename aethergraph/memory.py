"""memory(): durable events with provenance, queried through the index.

``record`` appends a ``memory_recorded`` event to the run's log (the source of truth) and returns
it; the index makes it queryable across runs and processes. Queries see everything recorded
before them, including by this node a moment ago.

Scopes: ``"run"`` (this run), ``"graph"`` (every run of this graph; the default, so a new run
sees what earlier runs of the same graph recorded) and ``"all"``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from runtime import events as ev
from runtime.ids import derived_id
from runtime.store.writer import encode_error
from runtime.journal import _CANONICAL

if TYPE_CHECKING:
    from runtime.engine import NodeHandle

SCOPES = ("run", "graph", "all")
# A full checkpoint (a chance for other tasks to run) every this many records; in between only
# cancellation is checked, which is what keeps a tight record() loop fast.
_YIELD_EVERY = 64
# ...or sooner when records are large: no other task (the log writer among them) should wait
# more than this for its turn.
_YIELD_AFTER_S = 0.002
_clock = time.perf_counter


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
        self._seen: dict[int, int] = {}
        self._last_yield = _clock()

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
        # The id derives from the node's key and what is recorded (plus the occurrence among
        # identical records), never from when: concurrent records in one node keep their ids
        # when the node is re-executed (resume). The node part is hashed once per node.
        if self._id_prefix is None:
            self._id_prefix = derived_id("ev", run.run_id, node.key) + "-"
        try:
            canonical = _CANONICAL.encode(event)
        except Exception as exc:  # RecursionError included: data nested too deep
            raise encode_error(event, exc) from None
        digest = hashlib.blake2b(canonical, digest_size=8).digest()
        # Occurrences among identical records, keyed compactly: a node may record millions.
        seen = self._seen
        key = int.from_bytes(digest, "little")
        n = seen[key] = seen.get(key, 0) + 1
        what = digest.hex()
        event.event_id = f"{self._id_prefix}{what}" if n == 1 else f"{self._id_prefix}{what}-{n}"
        if run.journal is not None:
            earlier = run.replayed("memory", event.event_id)
            if earlier is not None:  # recorded before a crash; this re-execution reuses it
                await trio.lowlevel.checkpoint()
                return earlier
        ticket = run.append(event)
        writer = node.runtime.writer
        if writer.durability == "strict":
            await writer.wait_durable(ticket)
        else:
            if writer.backlog > writer.room:  # waits if the oldest unwritten is too old
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

    # -- queries ------------------------------------------------------------------------------

    async def query(
        self,
        *,
        kinds: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        entities: Sequence[str] | None = None,
        run_id: str | None = None,
        node: str | None = None,
        topic: str | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        limit: int | None = 50,
        order: str = "desc",
        scope: str = "graph",
    ) -> list[ev.MemoryRecorded]:
        """Events matching every given filter, newest first (``order="asc"`` for oldest)."""
        if isinstance(kinds, str):
            kinds = [kinds]
        filters = scope_filter(self._node, scope) if run_id is None else {"run_id": run_id}
        rt = self._node.runtime
        await rt.writer.wait_durable()  # read what this process recorded a moment ago
        return await trio.to_thread.run_sync(
            lambda: rt.index.memory(
                kinds=kinds, tags=tags, entities=entities, node=node, topic=topic,
                since=since, until=until, text=text, limit=limit, order=order, **filters,
            )
        )

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
