"""The journal: what a run already did, read back from its log, so re-executing it (resume,
retry) does not do it again.

Journaled, and replayed instead of re-run:
- each ``@tool`` call's result, under its step ``<node path>:<tool>:<hash of the arguments>``
  (the path carries the call's position, ``parent/tool#2``);
- each ask's answer, under the ask's id (derived from run, node path and position);
- memory records, artifact writes and messages, under ids derived the same way, so a
  re-executed node does not record them twice.

Re-executed code that calls a different tool, or the same tool with other arguments, at a
journaled step is a *divergence*: the replay stops with an error naming the node path, the
step and what differed, rather than mixing two histories.
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
    """Re-executed code made a different tool call than the journal holds at this step."""

    def __init__(self, path: str, step: str, what: str) -> None:
        super().__init__(f"resume diverged at node {path} (step {step}): {what}")
        self.path = path
        self.step = step
        self.what = what


def args_hash(inputs: dict[str, Any]) -> str:
    return hashlib.blake2b(_CANONICAL.encode(inputs), digest_size=8).hexdigest()


def step_id(path: str, tool: str, inputs: dict[str, Any]) -> str:
    return f"{path}:{tool}:{args_hash(inputs)}"


@attrs.define
class ToolRecord:
    path: str
    name: str
    step: str
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
    tools: dict[str, ToolRecord] = attrs.field(factory=dict)
    answers: dict[str, str] = attrs.field(factory=dict)
    opened_asks: set[str] = attrs.field(factory=set)
    memory: dict[str, ev.MemoryRecorded] = attrs.field(factory=dict)
    artifacts: dict[str, ev.ArtifactWritten] = attrs.field(factory=dict)
    messages: set[str] = attrs.field(factory=set)
    # Only successful tool results: what `ag retry` replays into a new run.
    tools_only: bool = False

    @classmethod
    def from_events(cls, run_id: str, events: Iterable[ev.Event], *, tools_only: bool = False) -> "Journal":
        j = cls(run_id, tools_only=tools_only)
        for e in events:
            j.last_seq = max(j.last_seq, e.seq)
            t = type(e)
            if t is ev.RunStarted:
                j.graph, j.entrypoint, j.inputs = e.graph, e.entrypoint, dict(e.inputs)
            elif t is ev.RunResumed:
                j.attempts = max(j.attempts, e.attempt)
            elif t is ev.NodeStarted:
                if e.kind == "tool" and e.step:
                    j.tools[e.node] = ToolRecord(e.node, e.name, e.step)
            elif t is ev.NodeFinished:
                rec = j.tools.get(e.node)
                if rec is not None:
                    rec.ok, rec.done, rec.outputs = True, True, e.outputs
            elif t is ev.NodeFailed or t is ev.NodeCancelled:
                rec = j.tools.get(e.node)
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
            elif t is ev.AskOpened:
                j.opened_asks.add(e.ask_id)
            elif t is ev.AskAnswered:
                j.answers[e.ask_id] = e.answer
        return j

    @property
    def replayable_steps(self) -> int:
        return sum(1 for r in self.tools.values() if r.ok)

    def replay_tool(self, path: str, name: str, step: str) -> tuple[bool, Any]:
        """(True, outputs) when this call's result is journaled; (False, None) when it must run.

        Raises ``Divergence`` when the journal holds another call at this path."""
        rec = self.tools.get(path)
        if rec is None:
            return False, None
        if rec.name != name:
            raise Divergence(path, rec.step, f"the journal has tool {rec.name!r} here, the code now calls {name!r}")
        if rec.step != step:
            raise Divergence(path, rec.step, f"tool {name!r} is now called with other arguments ({step})")
        if rec.ok:
            return True, rec.outputs
        return False, None  # it failed or never finished: run it again
