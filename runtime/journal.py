"""The journal: what a run already did, read back from its log, so re-executing it (resume,
retry) does not do it again.

Every call is identified by *what the code asked for*, never by when it ran: trio varies task
order on purpose, so "the second call of ``work``" is not the same call twice.

- A node's key (``step``) is its parent's key + its name + a hash of its (canonically encoded)
  arguments, with ``#n`` only for the n-th of calls identical in all three. Tool results are
  journaled under it.
- An ask's id derives from its node's key + kind + prompt + options (+ occurrence among
  identical asks); memory records, artifact writes and messages likewise from the node's key +
  their kind/name + a hash of their content (+ occurrence among identical ones).

Readable node paths (``parent/work#2``) number calls in the order they happened; they are for
people. A resumed run reuses the path the journal has for a key, so a call keeps its name.

A call the journal has no match for is new work and runs. A journaled call that never finished
runs again. *Divergence* is reported when a node ends having made a call the journal has no
match for, while a finished call of the same tool under it, recorded earlier, was never made
again: the code now calls that tool with other arguments, and the two histories would mix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import attrs
import msgspec

from . import events as ev
from .errors import AetherGraphError

_CANONICAL = msgspec.json.Encoder(order="deterministic", enc_hook=ev._encode_unknown)


class Divergence(AetherGraphError):
    """Re-executed code replaced a journaled tool call by one with other arguments."""

    def __init__(self, path: str, step: str, what: str) -> None:
        super().__init__(f"resume diverged at node {path} (step {step}): {what}")
        self.path = path
        self.step = step
        self.what = what


def args_hash(inputs: dict[str, Any]) -> str:
    return hashlib.blake2b(_CANONICAL.encode(inputs), digest_size=8).hexdigest()


def content_hash(value: Any) -> str:
    """A hash of ``value``'s canonical JSON (keys sorted): equal content, equal hash."""
    return hashlib.blake2b(_CANONICAL.encode(value), digest_size=8).hexdigest()


def call_base(parent_key: str, name: str, inputs: dict[str, Any]) -> str:
    """A call's identity before its occurrence count: ``<parent key>/<name>:<args hash>``."""
    return f"{parent_key}/{name}:{args_hash(inputs)}"


def with_occurrence(base: str, n: int) -> str:
    """The n-th of calls identical in ``base`` (the first carries no suffix)."""
    return base if n == 1 else f"{base}#{n}"


def parent_key(key: str) -> str:
    return key.rsplit("/", 1)[0]


@attrs.define
class ToolRecord:
    path: str
    name: str
    step: str
    inputs: Any = None
    ok: bool = False
    done: bool = False
    outputs: Any = None


@attrs.define
class Journal:
    run_id: str
    graph: str = ""
    entrypoint: str = ""
    inputs: dict[str, Any] = attrs.field(factory=dict)
    last_seq: int = 0
    attempts: int = 1
    # Tool calls by key (the ``step`` of their node_started).
    tools: dict[str, ToolRecord] = attrs.field(factory=dict)
    # The readable path each key had, so a resumed call keeps its name; every path taken.
    paths: dict[str, str] = attrs.field(factory=dict)
    taken_paths: set[str] = attrs.field(factory=set)
    answers: dict[str, str] = attrs.field(factory=dict)
    opened_asks: set[str] = attrs.field(factory=set)
    memory: dict[str, ev.MemoryRecorded] = attrs.field(factory=dict)
    artifacts: dict[str, ev.ArtifactWritten] = attrs.field(factory=dict)
    messages: set[str] = attrs.field(factory=set)
    # The text each ``channel().stream()`` had said (its ``stream_delta`` events), by stream id.
    streams: dict[str, str] = attrs.field(factory=dict)
    # Only successful tool results: what `ag retry` replays into a new run.
    tools_only: bool = False

    @classmethod
    def from_events(cls, run_id: str, events: Iterable[ev.Event], *, tools_only: bool = False) -> "Journal":
        j = cls(run_id, tools_only=tools_only)
        # Node path -> the tool call running under it in the current execution. Paths are
        # unique within one execution; a resume starts a new one.
        live: dict[str, ToolRecord] = {}
        # For logs written before keys (``step`` empty, or ``<path>:<tool>:<hash>``): node
        # path -> key and the occurrence counts, rebuilt the way the engine builds them.
        keys: dict[str, str] = {}
        seen: dict[str, int] = {}
        for e in events:
            j.last_seq = max(j.last_seq, e.seq)
            t = type(e)
            if t is ev.RunStarted:
                j.graph, j.entrypoint, j.inputs = e.graph, e.entrypoint, dict(e.inputs)
            elif t is ev.RunResumed:
                j.attempts = max(j.attempts, e.attempt)
                live.clear()
                keys.clear()
                seen.clear()
            elif t is ev.NodeStarted:
                step = e.step
                if not step or step.startswith(f"{e.node}:{e.name}:"):
                    step = _legacy_key(e, keys, seen)
                keys[e.node] = step
                if step:
                    j.paths[step] = e.node
                    j.taken_paths.add(e.node)
                    if e.kind == "tool":
                        rec = live[e.node] = ToolRecord(e.node, e.name, step, e.inputs)
                        old = j.tools.get(step)
                        if old is None or not old.ok:  # a finished result is never replaced
                            j.tools[step] = rec
            elif t is ev.NodeFinished:
                rec = live.pop(e.node, None)
                if rec is not None:
                    rec.ok, rec.done, rec.outputs = True, True, e.outputs
            elif t is ev.NodeFailed or t is ev.NodeCancelled:
                rec = live.pop(e.node, None)
                if rec is not None:
                    rec.ok, rec.done = False, True
            elif tools_only:
                continue
            elif t is ev.MemoryRecorded:
                j.memory[e.event_id] = e
            elif t is ev.ArtifactWritten:
                if e.event_id:
                    j.artifacts[e.event_id] = e
            elif t is ev.MessageSent:
                if e.message_id:
                    j.messages.add(e.message_id)
            elif t is ev.StreamDelta:
                j.streams[e.stream_id] = j.streams.get(e.stream_id, "")[: e.offset] + e.text
            elif t is ev.AskOpened:
                j.opened_asks.add(e.ask_id)
            elif t is ev.AskAnswered:
                j.answers[e.ask_id] = e.answer
        return j

    @property
    def replayable_steps(self) -> int:
        return sum(1 for r in self.tools.values() if r.ok)

    def replay_tool(self, step: str) -> tuple[bool, Any]:
        """(True, outputs) when the call ``step`` finished before; (False, None) when it must
        run (never made, failed, or cut short by the crash)."""
        rec = self.tools.get(step)
        if rec is not None and rec.ok:
            return True, rec.outputs
        return False, None

    def replaced_calls(self, node_key: str, name: str, claimed: set[str]) -> list[ToolRecord]:
        """Finished calls of tool ``name`` directly under ``node_key`` that are not in
        ``claimed`` (the keys the re-executed node asked for)."""
        return [
            r for r in self.tools.values()
            if r.ok and r.name == name and r.step not in claimed and parent_key(r.step) == node_key
        ]


def _legacy_key(e: ev.NodeStarted, keys: dict[str, str], seen: dict[str, int]) -> str:
    """The key of a node a log recorded without one (an older version): its parent's key +
    name + hash of the recorded arguments, occurrences counted in log order (identical calls
    are interchangeable). "" when its parent is unknown."""
    if not e.parent:
        return e.node
    parent = keys.get(e.parent, "")
    if not parent:
        return ""
    base = call_base(parent, e.name, e.inputs)
    n = seen[base] = seen.get(base, 0) + 1
    return with_occurrence(base, n)
