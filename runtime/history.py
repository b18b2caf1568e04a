"""What a run's log says about it: state, timing, nodes, open asks.

The log is the source of truth, so this reads events and derives the picture; ``ag show``, the
dashboard and resume all use it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

import msgspec

from . import events as ev
from .info import AskInfo, RunInfo, track_asks

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


def effective_status(status: str, host: str | None, run_id: str, layout: Any) -> str:
    """A run still "running" that nobody on this machine owns any more was interrupted.

    The owner lock answers (``store.owner``: the kernel drops it when the owner dies, so a
    process that got the dead owner's pid cannot pass for it, and a resumed run is owned by its
    new process). A run recorded on another host is taken at its word."""
    if status != ev.RUNNING or host != HOST:
        return status
    from .store.owner import holder

    return ev.INTERRUPTED if holder(layout, run_id) is None else status


class NodeSummary(msgspec.Struct, kw_only=True):
    path: str
    name: str
    kind: str
    parent: str
    state: str = ev.RUNNING
    attempts: int = 1
    started: float = 0.0
    ended: float | None = None
    error: str = ""


class RunSummary(RunInfo, kw_only=True):
    """A run as its log tells it: its ``RunInfo`` (the row every list shows) and what only the
    log has: each node's summary, the inputs and outputs, the asks still open."""

    inputs: dict[str, Any] = {}
    outputs: Any = None
    nodes: dict[str, NodeSummary] = {}  # type: ignore[assignment]  # by path
    open_asks: dict[str, AskInfo] = {}
    attempts: int = 1

    @property
    def duration_s(self) -> float | None:
        """Finished or interrupted: ``RunInfo.duration``; still running: None (a log does not
        know the time now)."""
        if self.status == ev.RUNNING:
            return None
        return self.duration(0.0)

    def apply(self, e: ev.Event) -> bool:
        """Take one more event into account (in log order). Returns True when the node tree
        changed, so a live view redraws it only then."""
        self.events += 1
        self.last_seq = max(self.last_seq, e.seq)
        if self.last_ts is None or e.ts > self.last_ts:
            self.last_ts = e.ts
        t = type(e)
        if track_asks(self.open_asks, e):
            self.pending_asks = len(self.open_asks)
        if t is ev.RunStarted:
            self.graph, self.started, self.pid, self.host = e.graph, e.ts, e.pid, e.host
            self.entrypoint, self.inputs, self.attempt_of = e.entrypoint, e.inputs, e.attempt_of
            self.status, self.finished, self.error = ev.RUNNING, None, ""
        elif t is ev.RunResumed:
            self.status, self.finished, self.error = ev.RUNNING, None, ""
            self.pid, self.host, self.attempts = e.pid, e.host, e.attempt
        elif t is ev.RunFinished:
            self.status, self.finished, self.outputs = e.status, e.ts, e.outputs
            self.error = str(e.error) if e.error else ""
        elif t is ev.NodeStarted:
            self.nodes[e.node] = NodeSummary(path=e.node, name=e.name, kind=e.kind, parent=e.parent, started=e.ts)
            return True
        elif t is ev.NodeFinished:
            return self._end(e, ev.SUCCEEDED)
        elif t is ev.NodeFailed:
            return self._end(e, ev.FAILED, str(e.error))
        elif t is ev.NodeCancelled:
            return self._end(e, ev.CANCELLED, e.reason)
        elif t is ev.NodeTimedOut:
            n = self.nodes.get(e.node)
            if n is not None:  # the last word of a node that ran out of time and retries
                n.error = f"timed out after {e.timeout_s:g}s"
                n.state = ev.TIMED_OUT
                n.ended = e.ts
                return True
        elif t is ev.AttemptRetried:
            n = self.nodes.get(e.node)
            if n is not None:
                n.attempts = e.attempt + 1
                n.state = ev.RUNNING
                return True
        return False

    def _end(self, e: Any, state: str, error: str = "") -> bool:
        n = self.nodes.get(e.node)
        if n is None:
            return False
        n.state = state
        n.ended = e.ts
        n.attempts = max(n.attempts, getattr(e, "attempt", 1))
        if error:
            n.error = error
        return True

    def to_dict(self) -> dict[str, Any]:
        """What ``ag show --json`` says of the run."""
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
            "nodes": msgspec.to_builtins(list(self.nodes.values())),
            "open_asks": msgspec.to_builtins(list(self.open_asks.values())),
        }


def summarize(run_id: str, events: Iterable[ev.Event], layout: Any = None) -> RunSummary:
    """The run as its events tell it; ``layout`` (its store) lets a still "running" run be
    checked against its owner lock (without it, "running" is the log's word)."""
    s = RunSummary(run_id=run_id)
    for e in events:
        s.apply(e)
    if s.status == ev.RUNNING and layout is not None:
        s.status = effective_status(s.status, s.host, run_id, layout)
    return s
