"""What a run's log says about it: state, timing, nodes, open asks.

The log is the source of truth, so this reads events and derives the picture; ``ag show``, the
dashboard and resume all use it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

import attrs

from . import events as ev

HOST = socket.gethostname()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(status: str, pid: int | None, host: str | None) -> str:
    """A run still "running" whose process is gone from this machine was interrupted."""
    if status == ev.RUNNING and host == HOST and not pid_alive(pid):
        return ev.INTERRUPTED
    return status


@attrs.define
class NodeSummary:
    path: str
    name: str
    kind: str
    parent: str
    state: str = ev.RUNNING
    attempts: int = 1
    started: float = 0.0
    ended: float | None = None
    error: str = ""


@attrs.define
class RunSummary:
    run_id: str
    graph: str = ""
    status: str = ev.RUNNING
    started: float | None = None
    finished: float | None = None
    pid: int = 0
    host: str = ""
    entrypoint: str = ""
    inputs: dict[str, Any] = attrs.field(factory=dict)
    outputs: Any = None
    error: str = ""
    nodes: dict[str, NodeSummary] = attrs.field(factory=dict)
    open_asks: dict[str, ev.AskOpened] = attrs.field(factory=dict)
    events: int = 0
    last_seq: int = 0
    attempts: int = 1
    attempt_of: str = ""

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        end = self.finished
        return None if end is None else end - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "graph": self.graph,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "duration_s": self.duration_s,
            "pid": self.pid,
            "host": self.host,
            "entrypoint": self.entrypoint,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "error": self.error,
            "events": self.events,
            "attempts": self.attempts,
            "attempt_of": self.attempt_of,
            "nodes": [attrs.asdict(n) for n in self.nodes.values()],
            "open_asks": [_plain(a) for a in self.open_asks.values()],
        }


def _plain(event: ev.Event) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(event)


def summarize(run_id: str, events: Iterable[ev.Event]) -> RunSummary:
    s = RunSummary(run_id)
    for e in events:
        s.events += 1
        s.last_seq = max(s.last_seq, e.seq)
        t = type(e)
        if t is ev.RunStarted:
            s.graph, s.started, s.pid, s.host = e.graph, e.ts, e.pid, e.host
            s.entrypoint, s.inputs, s.attempt_of = e.entrypoint, e.inputs, e.attempt_of
            s.status, s.finished, s.error = ev.RUNNING, None, ""
        elif t is ev.RunResumed:
            s.status, s.finished, s.error = ev.RUNNING, None, ""
            s.pid, s.host, s.attempts = e.pid, e.host, e.attempt
        elif t is ev.RunFinished:
            s.status, s.finished, s.outputs = e.status, e.ts, e.outputs
            s.error = f"{e.error.type}: {e.error.message}" if e.error else ""
        elif t is ev.NodeStarted:
            s.nodes[e.node] = NodeSummary(e.node, e.name, e.kind, e.parent, started=e.ts)
        elif t is ev.NodeFinished:
            _end(s, e, ev.SUCCEEDED)
        elif t is ev.NodeFailed:
            _end(s, e, ev.FAILED, f"{e.error.type}: {e.error.message}")
        elif t is ev.NodeCancelled:
            _end(s, e, ev.CANCELLED, e.reason)
        elif t is ev.NodeTimedOut:
            n = s.nodes.get(e.node)
            if n is not None:
                n.error = f"timed out after {e.timeout_s:g}s"
                n.state = ev.TIMED_OUT
        elif t is ev.AttemptRetried:
            n = s.nodes.get(e.node)
            if n is not None:
                n.attempts = e.attempt + 1
                n.state = ev.RUNNING
        elif t is ev.AskOpened:
            s.open_asks[e.ask_id] = e
        elif t is ev.AskAnswered or t is ev.AskExpired:
            s.open_asks.pop(e.ask_id, None)
    if s.status == ev.RUNNING:
        s.status = effective_status(s.status, s.pid, s.host)
    return s


def _end(s: RunSummary, e: Any, state: str, error: str = "") -> None:
    n = s.nodes.get(e.node)
    if n is None:
        return
    # A timed-out node ends with NodeTimedOut (no further event); keep that state.
    n.state = state
    n.ended = e.ts
    n.attempts = max(n.attempts, getattr(e, "attempt", 1))
    if error:
        n.error = error
