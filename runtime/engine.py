"""Runs and nodes under trio supervision.

A *runtime* is a nursery that owns the log writer, the shared timer, the store and a nursery for
services' background work. A *run* is one top-level call of a graph: its own cancel scope, its own
log. A *node* is one call of a graph function or tool inside a run. It has a *key*, derived from
what the code asked for (parent key, name, hash of the arguments; see ``journal``), under which
the journal knows it, and a readable *path* for people (``submit_poll_notify/submit_job``,
``.../submit_job#2`` for the second call of the same name in the same parent, in the order the
calls happened; a resumed run reuses the path the journal has for a key). Each node runs in its
own cancel scope, registered under run id and path, so it can be cancelled or retried from
outside; each attempt runs in a nested scope that carries the node's deadline.

Terminal states are exact: a node that ran out of time is TIMED_OUT, one that someone stopped is
CANCELLED (with the reason and who asked), and only an exception in its own code is FAILED.

Read it in this order. ``Runtime.run_graph`` opens a run with ``Runtime.open_run`` (how it
begins is what the caller passes: ``NewRun``, ``RetryRun``, ``ResumeRun``) and executes its root
node. ``Runtime.execute_node`` places a node, starts it (``Run.start_node``), runs its attempts
(each comes to an ``Outcome``, ``NodeHandle.attempt_outcome``; the retry policy decides whether
another follows, after ``Runtime._backoff``) and ends it with ``NodeHandle.end``, the one place
a node's terminal event is written. Every event goes out through ``Run.append`` (its place in
the run) and ``Runtime.send`` (the log, the subscribers).
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from . import events as ev
from ._exc import describe, real_leaves, tag_node, unwrap_single
from .errors import AetherGraphError, GraphFailed, NodeCancelled, NodeTimeout, UnknownNode, UnknownRun
from .ids import new_run_id
from .journal import Divergence, Journal, call_base, with_occurrence
from .retry import NO_RETRY, RetryPolicy
from .store.artifacts import BlobStore
from .store.index import Index
from .store.kv import KVStore
from .store.layout import StoreLayout
from .store.writer import LogWriter, encode_error, resolve_durability
from .timer import Timer

log = logging.getLogger("aethergraph.runtime")

current_runtime: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "aethergraph_runtime", default=None
)
current_node: contextvars.ContextVar[NodeHandle | None] = contextvars.ContextVar(
    "aethergraph_node", default=None
)

HOST = socket.gethostname()
_now = time.time


class FaultInjection:
    """``AETHERGRAPH_FAULT=kill:<event type>[:<text>]`` kills this process with SIGKILL when a
    run is about to record a matching event (``<text>`` must appear in its node path, kind,
    name or text); ``killafter:...`` once that event is on disk. For crash tests: the process
    dies exactly there, with whatever the log writer had flushed."""

    ENV = "AETHERGRAPH_FAULT"

    def __init__(self, spec: str) -> None:
        action, _, rest = spec.partition(":")
        if action not in ("kill", "killafter") or not rest:
            raise ValueError(f"{self.ENV} must look like kill:<event type>[:<text>], got {spec!r}")
        self.after_flush = action == "killafter"
        self.tag, _, self.text = rest.partition(":")

    def hits(self, event: ev.Event) -> bool:
        if type(event).__struct_config__.tag != self.tag:
            return False
        if not self.text:
            return True
        hay = " ".join(str(getattr(event, f, "")) for f in ("node", "kind", "name", "text", "prompt"))
        return self.text in hay

    @staticmethod
    def crash() -> None:
        os.kill(os.getpid(), signal.SIGKILL)


_FAULT = FaultInjection(os.environ[FaultInjection.ENV]) if os.environ.get(FaultInjection.ENV) else None


@attrs.frozen
class NodeSpec:
    """What the engine needs to know about a callable to run it as a node."""

    name: str
    kind: str = "graph_fn"  # "graph_fn" | "tool"
    retry: RetryPolicy = NO_RETRY
    timeout_s: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")


@attrs.define(eq=False)
class NodeHandle:
    run: Run
    path: str
    spec: NodeSpec
    parent: NodeHandle | None
    # The durable identity (see ``journal``): what the code asked for, not when it ran.
    key: str = ""
    attempt: int = 0
    # The scope of the current attempt (or of the backoff before the next one): cancelling it
    # is how a timeout, a retry request and a cancel request all reach the node's code.
    attempt_scope: trio.CancelScope | None = None
    state: str = ev.RUNNING
    cancel_requested: bool = False
    cancel_reason: str = ""
    cancel_by: str = ""
    retry_requested_by: str | None = None
    # time.monotonic() when it started: every attempt's duration_s counts from here.
    started: float = 0.0
    # The bookkeeping below is made on first use: most nodes (a leaf tool, B2's ten thousand
    # pollers) never place a child, and each container made per node is time on the hot path.
    _children: dict[str, int] | None = None
    _counters: dict[str, int] | None = None
    # On re-execution: the journaled tool calls this node asked for again, and the tool calls
    # it made that the journal has no match for (by tool name) -- see ``replaced_call``.
    # (A set is tracked by the garbage collector, and a fan-out keeps thousands of nodes alive
    # that never re-execute anything.)
    claimed: set[str] | None = None
    unmatched: dict[str, list[Any]] | None = None
    # The public API caches its NodeContext here; the engine never looks at it.
    user_context: Any = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def runtime(self) -> Runtime:
        return self.run.runtime

    def next_count(self, what: str) -> int:
        """How many times this node has asked for exactly ``what`` (a call, an ask, a record:
        its full identity), this time included. Identical requests are interchangeable, so
        their order does not matter; different ones never share a counter."""
        counters = self._counters
        if counters is None:
            counters = self._counters = {}
        n = counters.get(what, 0) + 1
        counters[what] = n
        return n

    def identity(self, what: str) -> str:
        """``what`` (``kind|name|content hash``...) as a durable identity within this node:
        its key + ``what`` + the occurrence among identical requests."""
        base = f"{self.key}|{what}"
        return with_occurrence(base, self.next_count(base))

    def child_path(self, name: str, key: str) -> str:
        """A readable path for the child call ``key``: the one the journal knows it by, else
        the next ``name#n`` that no journaled call has taken."""
        j = self.run.journal
        reuse = j is not None and not j.tools_only  # a retry is a new run with its own paths
        if reuse:
            known = j.paths.get(key)
            # (A log from before keys may have given one path to two calls: never two live.)
            if known is not None and known not in self.run.nodes:
                return known
        children = self._children
        if children is None:
            children = self._children = {}
        n = children.get(name, 0)
        while True:
            n += 1
            path = f"{self.path}/{name}" if n == 1 else f"{self.path}/{name}#{n}"
            if not reuse or path not in j.taken_paths:
                break
        children[name] = n
        return path

    def replaced_call(self) -> Divergence | None:
        """After this node ran: a finished journaled tool call under it that it did not make
        again while it made a call of the same tool the journal has no match for."""
        j = self.run.journal
        if j is None or not self.unmatched:
            return None
        for name, made in self.unmatched.items():
            replaced = j.replaced_calls(self.key, name, self.claimed or set())
            if replaced:
                old = replaced[0]
                return Divergence(
                    old.path, old.step,
                    f"tool {name!r} is now called with other arguments ({_args(made[0])}); the "
                    f"journal has a finished call with {_args(old.inputs)} that the code no "
                    "longer makes",
                )
        return None

    def cancel(self, reason: str = "cancelled", by: str = "") -> None:
        if not self.cancel_requested:
            self.cancel_requested = True
            self.cancel_reason, self.cancel_by = reason, by
        if self.attempt_scope is not None:
            self.attempt_scope.cancel()

    def request_retry(self, by: str = "") -> bool:
        """End the current attempt now and start the next one with the same inputs."""
        if self.attempt_scope is None or self.state != ev.RUNNING:
            return False
        self.retry_requested_by = by or "unknown"
        self.attempt_scope.cancel()
        return True

    def emit(self, cls: type[ev.Event], **fields: Any) -> tuple[ev.Event, int]:
        return self.run.emit(cls, node=self.path, **fields)

    def emit_attempt(self, cls: type[ev.Event], **fields: Any) -> int:
        """Emit an event about the current attempt: its number and the time since the node
        started go with it. Returns the writer's ticket."""
        return self.run.emit(cls, node=self.path, attempt=self.attempt,
                             duration_s=time.monotonic() - self.started, **fields)[1]

    # -- ending ---------------------------------------------------------------------------------

    async def end(self, outcome: Outcome) -> Any:
        """End this node as ``outcome`` says and give its caller the result: what the code
        returned, or the exception that says how the node ended (its own error, ``NodeTimeout``,
        ``NodeCancelled``, or what stopped it from outside, re-raised as it came).

        The one place a node's terminal event is written, and the one place it lets go of its
        registration in the run (from then on it cannot be cancelled or retried by path). The
        state is set before the event is emitted: an event that cannot be written (say, outputs
        that do not encode) reaches the caller as an error, never followed by a second end."""
        try:
            state = outcome.state
            if state == ev.SUCCEEDED:
                ticket = self._returned(outcome.value)
                if ticket is not None:
                    # A tool's result, under strict durability: the journal has it before
                    # anything can act on it.
                    with trio.CancelScope(shield=True):
                        await self.run.runtime.writer.wait_durable(ticket)
                return outcome.value
            self.state = state
            if state == ev.FAILED:
                tag_node(outcome.error, self.path)
                self.emit_attempt(ev.NodeFailed, error=failure_info(outcome.error))
                raise outcome.error
            if state == ev.TIMED_OUT:
                timeout_s = self.spec.timeout_s or 0.0
                self.emit_attempt(ev.NodeTimedOut, timeout_s=timeout_s)
                raise NodeTimeout(self.path, timeout_s, self.attempt)
            self.emit_attempt(ev.NodeCancelled, reason=outcome.reason, by=outcome.by)
            if outcome.error is None:  # this node was cancelled
                raise NodeCancelled(self.path, outcome.reason, outcome.by)
            if isinstance(outcome.error, NodeCancelled):  # a child's cancellation ended it
                raise NodeCancelled(self.path, outcome.reason, outcome.by) from outcome.error
            raise outcome.error  # stopped from outside: whoever stopped it handles it
        finally:
            self.attempt_scope = None
            if self.run.nodes.get(self.path) is self:
                del self.run.nodes[self.path]

    def _returned(self, value: Any) -> int | None:
        """The code returned ``value``: the node SUCCEEDED, unless the value is ``Failed`` (it
        chose to fail) or, re-executed, it replaced a journaled tool call (``Divergence``,
        raised). Returns the ticket of the terminal event when it must be on disk before the
        caller goes on: a tool's, under strict durability."""
        diverged = self.replaced_call()
        if diverged is not None:
            run = self.run
            run.diverged = run.diverged or diverged
            tag_node(diverged, self.path)
            self.state = ev.FAILED
            self.emit_attempt(ev.NodeFailed, error=failure_info(diverged, with_traceback=False))
            raise diverged
        if isinstance(value, Failed):
            self.state = ev.FAILED
            self.emit_attempt(ev.NodeFailed, outputs=value.outputs,
                              error=ev.ErrorInfo(type="Failed", message=value.message))
            return None
        self.state = ev.SUCCEEDED
        run = self.run
        ticket = run.append(ev.NodeFinished(run_id=run.run_id, node=self.path, attempt=self.attempt,
                                            duration_s=time.monotonic() - self.started, outputs=value))
        if self.spec.kind == "tool" and self.run.runtime.durability == "strict":
            return ticket
        return None

    def attempt_outcome(self, scope: trio.CancelScope, value: Any, failure: Exception | None) -> Outcome:
        """What the attempt that ran in ``scope`` came to: it returned ``value`` or raised
        ``failure``. The cancelled scope alone does not say why it stopped; the node's flags
        do (see ``cancel``, ``request_retry``)."""
        if failure is None and not scope.cancelled_caught and not self.cancel_requested:
            return Outcome(ev.SUCCEEDED, value)
        cancelled = _cancellation(failure) if failure is not None else None
        if cancelled is not None:
            # A cancelled child not caught in a nursery is a decision someone took: this node
            # ends CANCELLED too (not FAILED), and is never retried for it.
            reason = f"child {cancelled.path} cancelled: {cancelled.reason}"
            return Outcome(ev.CANCELLED, error=cancelled, reason=reason, by=cancelled.by)
        if self.cancel_requested:
            return Outcome(ev.CANCELLED, reason=self.cancel_reason, by=self.cancel_by)
        if scope.cancelled_caught:
            return Outcome(RETRY_REQUESTED if self.retry_requested_by is not None else ev.TIMED_OUT)
        return Outcome(ev.FAILED, error=failure)

    def stopped_by(self, exc: BaseException) -> Outcome:
        """How this node ends when ``exc`` came out of its attempts instead of an outcome. An
        error of the engine's own (an event that could not be emitted between attempts) fails
        it as its code would; anything else stopped it from outside (an enclosing scope, a
        Ctrl-C): it ends CANCELLED saying why, and ``exc`` goes on to its caller."""
        if isinstance(exc, Exception):
            return Outcome(ev.FAILED, error=exc)
        if isinstance(exc, trio.Cancelled):
            reason, by = self._outer_cancel_reason()
        elif isinstance(exc, KeyboardInterrupt):
            reason, by = "interrupted (KeyboardInterrupt)", "signal"
        else:
            reason, by = f"interrupted ({type(exc).__name__})", ""
        return Outcome(ev.CANCELLED, error=exc, reason=reason, by=by)

    def _outer_cancel_reason(self) -> tuple[str, str]:
        """Why this node saw ``trio.Cancelled`` from outside its own scopes."""
        p = self.parent
        while p is not None:
            if p.cancel_requested:
                return f"parent {p.path} cancelled: {p.cancel_reason}", p.cancel_by
            if p.attempt_scope is not None and p.attempt_scope.cancel_called:
                if p.retry_requested_by is not None:
                    return f"parent {p.path} is being retried", p.retry_requested_by
                return f"parent {p.path} timed out", "deadline"
            p = p.parent
        run = self.run
        if run.scope.cancel_called:
            return f"run cancelled: {run.cancel_reason}", run.cancel_by
        return "cancelled by an enclosing cancel scope", ""


@attrs.define(eq=False)
class Run:
    runtime: Runtime
    run_id: str
    graph: str
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    seq: int = 0
    last_ts: float = 0.0
    status: str = ev.RUNNING
    cancel_reason: str = ""
    cancel_by: str = ""
    nodes: dict[str, NodeHandle] = attrs.field(factory=dict)
    started: float = attrs.field(factory=time.time)
    # What an earlier execution of this run did (resume), or of the run it retries.
    journal: Journal | None = None
    diverged: Divergence | None = None
    # Set when some of this run's events could not be written (disk full...): the run fails.
    store_error: BaseException | None = None
    # The ticket of its run_started (see ``resumable``); None for a resumed run.
    first_ticket: int | None = None
    # How it ended, filled in as it ends (see ``Runtime.open_run``).
    outcome: RunOutcome = attrs.field(
        default=attrs.Factory(lambda self: RunOutcome(self.run_id, ev.RUNNING), takes_self=True)
    )
    _roots: dict[str, int] = attrs.field(factory=dict)

    def append(self, event: ev.Event) -> int:
        """Stamp ``event`` with its place in this run (seq, ts) and send it (``Runtime.send``).
        Returns the writer's ticket (see ``LogWriter.wait_durable``)."""
        self.seq += 1
        event.seq = self.seq
        ts = _now()
        if ts < self.last_ts:  # keep a run's timeline monotonic across clock steps
            ts = self.last_ts
        self.last_ts = ts
        event.ts = ts
        try:
            return self.runtime.send(event)
        except Exception:
            self.seq -= 1  # nothing was recorded: the next event takes this place
            raise

    def emit(self, cls: type[ev.Event], node: str = "", **fields: Any) -> tuple[ev.Event, int]:
        event = cls(run_id=self.run_id, node=node, **fields)
        return event, self.append(event)

    async def resumable(self) -> None:
        """Under strict durability, wait until this run's ``run_started`` is on disk: a crash
        from then on leaves a run that can be resumed. (A resumed run already can.)"""
        if self.first_ticket is not None and self.runtime.durability == "strict":
            await self.runtime.writer.wait_durable(self.first_ticket)

    def returned(self, outputs: Any) -> None:
        """The root node returned ``outputs``: the run succeeded, or it failed on purpose
        (``Failed``: the caller still gets its outputs)."""
        o = self.outcome
        if isinstance(outputs, Failed):
            o.status, o.outputs = ev.FAILED, outputs.outputs
            o.error = GraphFailed(outputs.message, outputs.outputs)
        else:
            o.status, o.outputs = ev.SUCCEEDED, outputs

    def place(self, parent: NodeHandle | None, name: str, inputs: dict[str, Any],
              node_id: str | None) -> tuple[str, str]:
        """The key and the path of a node about to start (see the module docstring). A node of
        a static graph (``node_id``) is ``<parent key>/@<id>`` at ``<parent path>/<id>``, whatever
        its arguments, so a resume finds it by id."""
        if parent is None:
            key = self.root_path(name)
            return key, key
        if node_id is not None:
            return f"{parent.key}/@{node_id}", f"{parent.path}/{node_id}"
        base = call_base(parent.key, name, inputs)
        key = with_occurrence(base, parent.next_count(base))
        return key, parent.child_path(name, key)

    def start_node(self, path: str, spec: NodeSpec, parent: NodeHandle | None, key: str,
                   inputs: dict[str, Any]) -> NodeHandle:
        """A node placed at ``path`` (see ``place``) starts: registered, so it can be cancelled
        and retried by path, and its ``node_started`` sent."""
        node = NodeHandle(self, path, spec, parent, key)
        self.nodes[path] = node
        self.append(ev.NodeStarted(
            run_id=self.run_id, node=path, name=spec.name, kind=spec.kind, inputs=inputs,
            parent=parent.path if parent is not None else "", step=key,
        ))
        node.started = time.monotonic()
        return node

    def replayed_tool(self, parent: NodeHandle | None, name: str, key: str,
                      inputs: dict[str, Any]) -> tuple[bool, Any]:
        """``(True, outputs)`` when the journal holds a finished call of this tool under
        ``key``: the caller gets its result without the tool running again. Notes on
        ``parent`` whether the journal knows the call (see ``NodeHandle.replaced_call``); a
        tool run on its own has nothing above it to compare calls with."""
        j = self.journal
        assert j is not None
        if parent is not None:
            if key in j.tools:
                if parent.claimed is None:
                    parent.claimed = set()
                parent.claimed.add(key)
            else:
                if parent.unmatched is None:
                    parent.unmatched = {}
                parent.unmatched.setdefault(name, []).append(inputs)
        return j.replay_tool(key)

    def replayed(self, kind: str, key: str) -> Any:
        """The journaled memory event / artifact, or True for a message, already recorded under
        ``key`` by an earlier execution of this run; None when it must be recorded now."""
        j = self.journal
        if j is None or j.tools_only:
            return None
        if kind == "memory":
            return j.memory.get(key)
        if kind == "artifact":
            return j.artifacts.get(key)
        if kind == "message":
            return True if key in j.messages else None
        raise ValueError(kind)

    def root_path(self, name: str) -> str:
        n = self._roots.get(name, 0) + 1
        self._roots[name] = n
        return name if n == 1 else f"{name}#{n}"

    def cancel(self, reason: str = "cancelled", by: str = "") -> None:
        if not self.cancel_reason:
            self.cancel_reason, self.cancel_by = reason, by
        self.scope.cancel()


def failure_info(exc: BaseException, *, with_traceback: bool = True) -> ev.ErrorInfo:
    """How a failure is recorded: the leaf exception's type and message with the node it
    failed (not "ExceptionGroup: Exceptions from Trio nursery"), and the whole traceback."""
    kind, message = describe(exc)
    tb = "".join(traceback.format_exception(exc)) if with_traceback else ""
    return ev.ErrorInfo(type=kind, message=message, traceback=tb)


def _cancellation(exc: BaseException | None) -> NodeCancelled | None:
    """``exc`` if it is a ``NodeCancelled``, the first one when it is a group of nothing but
    node cancellations (and the ``Cancelled`` of the siblings they took down), else None."""
    if isinstance(exc, NodeCancelled):
        return exc
    if not isinstance(exc, BaseExceptionGroup):
        return None
    real = real_leaves(exc)
    if all(isinstance(e, NodeCancelled) for e in real):
        return real[0]  # type: ignore[return-value]
    return None


def _args(inputs: Any) -> str:
    """Arguments as a short, readable text for an error message."""
    text = ev.ENCODER.encode(inputs).decode(errors="replace") if inputs is not None else "{}"
    return text if len(text) <= 120 else text[:117] + "..."


@attrs.frozen
class Failed:
    """Return this from a node to end it FAILED on purpose, keeping ``outputs``.

    For a result that is a failure but not an error (a job that failed and was not retried).
    A node that returns a child's ``Failed`` ends FAILED too, so the state travels up; at the
    top of a run it is unwrapped: the caller gets ``outputs`` and the run is recorded FAILED.
    """

    message: str
    outputs: Any = None


@attrs.define
class RunOutcome:
    run_id: str
    status: str
    outputs: Any = None
    error: BaseException | None = None
    # What the run's log records about ``error`` (see ``failure_info``).
    error_info: ev.ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.status == ev.SUCCEEDED


RETRY_REQUESTED = "retry_requested"


@attrs.define
class Outcome:
    """What one attempt of a node came to; the last one is how the node ends (``NodeHandle.end``).

    ``state``: a terminal state of a node (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED), or
    RETRY_REQUESTED: someone asked for another attempt now. ``value``: what the code returned.
    ``error``: what it raised (FAILED); for CANCELLED, the child cancellation that ended it or
    what stopped it from outside (None when the node itself was cancelled). ``reason``/``by``:
    why a CANCELLED node stopped, and who asked. (Mutable attrs: one is made per attempt, on
    the hot path, and a frozen one costs four times as much to make.)
    """

    state: str
    value: Any = None
    error: BaseException | None = None
    reason: str = ""
    by: str = ""


@attrs.frozen
class NewRun:
    """How a run begins, passed to ``Runtime.open_run``: a run that has not run before, in a log
    of its own. ``run_id``: the id to give it (``ag run --run-id``), else a fresh one."""

    run_id: str = ""

    def open(self, rt: Runtime, graph: str) -> Run:
        run_id = self.run_id or new_run_id()
        rt.writer.open_run(run_id)  # owns the log from here (RunBusy if not)
        return Run(rt, run_id, graph)

    def announce(self, run: Run, inputs: dict[str, Any], entrypoint: str) -> int | None:
        return _run_started(run, inputs, entrypoint)


@attrs.frozen
class RetryRun:
    """A new run from the inputs of run ``of``, which ended badly (``ag retry``), linked to it
    (``attempt_of``). ``journal``: that run's, tools only; its successful tool results are
    replayed instead of run again. None: everything runs again (``--fresh``)."""

    of: str
    journal: Journal | None = None

    def open(self, rt: Runtime, graph: str) -> Run:
        run_id = new_run_id()
        rt.writer.open_run(run_id)
        return Run(rt, run_id, graph, journal=self.journal)

    def announce(self, run: Run, inputs: dict[str, Any], entrypoint: str) -> int | None:
        return _run_started(run, inputs, entrypoint, attempt_of=self.of)


@attrs.frozen
class ResumeRun:
    """The interrupted run ``journal.run_id`` continues in its own log, after the events it
    has; what the journal holds is replayed, not done again (see ``aethergraph.resume``)."""

    journal: Journal

    def open(self, rt: Runtime, graph: str) -> Run:
        j = self.journal
        if j.run_id in rt.runs:
            raise AetherGraphError(f"run {j.run_id} is already running here")
        rt.writer.open_run(j.run_id, resume=True)  # cuts a torn tail: only the owner may
        return Run(rt, j.run_id, graph, journal=j, seq=j.last_seq)

    def announce(self, run: Run, inputs: dict[str, Any], entrypoint: str) -> int | None:
        """``run_resumed``; nothing to wait for: the run could already be resumed."""
        j = self.journal
        run.emit(ev.RunResumed, attempt=j.attempts + 1, pid=os.getpid(), host=HOST,
                 replayable_steps=j.replayable_steps)
        return None


RunStart = NewRun | RetryRun | ResumeRun
_NEW_RUN = NewRun()


def _run_started(run: Run, inputs: dict[str, Any], entrypoint: str, attempt_of: str = "") -> int:
    """A new run's first event. Returns its ticket: under strict durability the run waits
    until it is on disk, so that a crash from then on leaves a run that can be resumed."""
    return run.emit(
        ev.RunStarted,
        graph=run.graph,
        inputs=inputs,
        entrypoint=entrypoint,
        pid=os.getpid(),
        host=HOST,
        durability=run.runtime.durability,
        attempt_of=attempt_of,
    )[1]


class OpenRun:
    """``Runtime.open_run``: a run from its first event to its last, around the block that
    executes it.

    ``start`` owns the log and writes the first event (``run_started``, ``run_resumed``).
    The block runs in the run's cancel scope; it begins with ``await run.resumable()`` (the
    wait cannot be here: a context manager must let its block run, even when that wait is
    cancelled or fails). Whatever ends it becomes ``run.outcome`` and the run's last event,
    ``run_finished``: what the root returned (``Run.returned``), a node's error, a cancel, a
    divergence, events the log could not take. Those are the run's result, not the caller's
    exception; only what stops the whole program (Ctrl-C, a cancel from outside the run)
    propagates, after it is recorded.

    A class rather than an ``@asynccontextmanager`` generator: one is opened per top-level
    run, and the generator machinery cost ~30 Python calls a run (B1 ``top``).
    """

    __slots__ = ("rt", "graph", "inputs", "start", "entrypoint", "run", "t0")

    def __init__(self, rt: Runtime, graph: str, inputs: dict[str, Any], start: RunStart,
                 entrypoint: str) -> None:
        self.rt = rt
        self.graph = graph
        self.inputs = inputs
        self.start = start
        self.entrypoint = entrypoint

    async def __aenter__(self) -> Run:
        rt, start = self.rt, self.start
        run = self.run = start.open(rt, self.graph)
        rt.runs[run.run_id] = run
        rt._runs_changed()
        self.t0 = time.monotonic()
        run.first_ticket = start.announce(run, self.inputs, self.entrypoint)
        run.scope.__enter__()
        return run

    async def __aexit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> bool:
        run = self.run
        outcome = run.outcome
        raised: BaseException | None = None
        try:
            # The scope first, as a ``with`` around the block would: it catches its own cancel.
            if not run.scope.__exit__(etype, exc, tb) and exc is not None:
                raise exc
            if run.scope.cancelled_caught:
                outcome.status = ev.CANCELLED
                outcome.error = NodeCancelled(self.graph, run.cancel_reason, run.cancel_by)
            if run.diverged is not None:
                # Whatever the code did with the error, a replay that diverged is stopped.
                outcome.status, outcome.error, outcome.outputs = ev.FAILED, run.diverged, None
        except NodeCancelled as e:
            outcome.status, outcome.error = ev.CANCELLED, e
        except NodeTimeout as e:
            outcome.status, outcome.error = ev.TIMED_OUT, e
        except Exception as e:
            outcome.status, outcome.error = ev.FAILED, run.diverged or e
        except BaseException as e:  # KeyboardInterrupt, or cancellation from outside the run
            outcome.status, outcome.error = ev.CANCELLED, e
            raised = e
        finally:
            await self.rt._close_run(run, self.t0)
        if raised is not None:
            raise raised
        return True


@attrs.define
class RuntimeConfig:
    home: str | None = None
    durability: str | None = None
    # Answers to give to asks, in order, before any channel is asked (``ag run --answer``).
    answers: list[str] = attrs.field(factory=list)
    handle_sigint: bool = True
    services: dict[str, Any] = attrs.field(factory=dict)
    answer_sources: list[Any] = attrs.field(factory=list)
    # Serve the sidecar (a 0600 unix socket in the store) so other terminals can watch and act.
    sidecar: bool = True
    # Also listen on TCP ("127.0.0.1:0"), always with a token; None: from $AETHERGRAPH_SIDECAR_TCP.
    sidecar_tcp: str | None = None
    # How to resume a run by id (the public API provides it: it knows how to import code);
    # an object with async ``check(rt, run_id)`` and ``resume(rt, run_id)``.
    resumer: Any = None


# What runs a node's code once: ``await invoke(node)`` is what the attempt returned. It may have a
# ``finish(value)`` method, applied to that within the attempt (an error in it fails the
# attempt): ``invoke`` can then hand back the code's own coroutine to await, with no coroutine
# of its own between the engine and the code (B2).
Invoke = Callable[[NodeHandle], Awaitable[Any]]


class Runtime:
    """Owns everything that must outlive a single run; see ``open_runtime``."""

    def __init__(self, config: RuntimeConfig, layout: StoreLayout, system: trio.Nursery) -> None:
        from .asks import AskBroker

        self.config = config
        self.layout = layout
        self.durability = resolve_durability(config.durability)
        self.index = Index(layout)
        self.writer = LogWriter(layout, self.durability, sink=self.index.ingest,
                                on_failure=self._log_write_failed)
        self.timer = Timer()
        self.blobs = BlobStore(layout)
        self.kv = KVStore(layout)
        self.asks = AskBroker(self, list(config.answers), list(config.answer_sources))
        self.services: dict[str, Any] = dict(config.services)
        self.runs: dict[str, Run] = {}
        self.interrupted = False
        self._system = system
        self._service_nursery: trio.Nursery | None = None
        self._started_services: set[str] = set()
        self.sidecar: Any = None
        self._runs_listeners: list[Callable[[], None]] = []
        self._subscribers: list[Callable[[ev.Event, bytes], None]] = []
        self._typed_subscribers: dict[type, list[Callable[[ev.Event, bytes], None]]] = {}

    # -- services -----------------------------------------------------------------------------

    @property
    def service_nursery(self) -> trio.Nursery:
        """Where services run background work; cancelled when the runtime closes."""
        if self._service_nursery is None:
            raise RuntimeError("the runtime is not open")
        return self._service_nursery

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        self.service_nursery.start_soon(fn, *args, name=name)

    def attach_service(self, name: str, service: Any) -> None:
        """Make ``service`` available; start it (in the background) if the runtime is open."""
        self.services[name] = service
        if self._service_nursery is not None and name not in self._started_services:
            self._started_services.add(name)
            start = getattr(service, "start", None)
            if start is not None:
                self._service_nursery.start_soon(start, name=f"service {name} start")

    async def _start_services(self) -> None:
        for name, svc in list(self.services.items()):
            self._started_services.add(name)
            start = getattr(svc, "start", None)
            if start is not None:
                await start()

    async def _close_services(self) -> None:
        for name, svc in reversed(list(self.services.items())):
            close = getattr(svc, "close", None)
            if close is None or name not in self._started_services:
                continue
            with trio.move_on_after(10):
                try:
                    await close()
                except Exception:
                    log.exception("service %s failed to close", name)

    # -- events -------------------------------------------------------------------------------

    def subscribe(
        self,
        callback: Callable[[ev.Event, bytes], None],
        types: Iterable[type[ev.Event]] | None = None,
    ) -> Callable[[], None]:
        """Call ``callback(event, encoded)`` synchronously with every event emitted from now
        on (or only events of ``types``); ``encoded`` is the event's JSON as the log stores it.
        It must not block: a slow consumer queues and drops itself, it never slows the run.

        The lists of callbacks are replaced, never changed in place, so that ``_publish``
        walks them without a copy per event while a callback (un)subscribes."""
        keys = [None] if types is None else list(types)
        for key in keys:
            self._set_callbacks(key, [*self._callbacks(key), callback])

        def unsubscribe() -> None:
            for key in keys:
                self._remove_callback(key, callback)

        return unsubscribe

    def _callbacks(self, key: type | None) -> list[Callable[[ev.Event, bytes], None]]:
        return self._subscribers if key is None else self._typed_subscribers.get(key, [])

    def _remove_callback(self, key: type | None, callback: Callable[[ev.Event, bytes], None]) -> None:
        callbacks = self._callbacks(key)
        if callback in callbacks:
            rest = list(callbacks)
            rest.remove(callback)
            self._set_callbacks(key, rest)

    def _set_callbacks(self, key: type | None, callbacks: list[Callable[[ev.Event, bytes], None]]) -> None:
        if key is None:
            self._subscribers = callbacks
        elif callbacks:
            self._typed_subscribers[key] = callbacks
        else:
            self._typed_subscribers.pop(key, None)

    def send(self, event: ev.Event) -> int:
        """Send a stamped event (see ``Run.append``) to the log writer and to the subscribers
        that want it; returns the writer's ticket. With subscribers it is encoded once, here:
        the same bytes go to the log and to the wire. Without, the writer encodes it straight
        into its buffer. An event that cannot be encoded raises and goes nowhere."""
        if _FAULT is not None and _FAULT.hits(event):
            if not _FAULT.after_flush:
                _FAULT.crash()
            self.writer.crash_after_flush = _FAULT.crash
        if not (self._subscribers or self._typed_subscribers.get(type(event))):
            return self.writer.append(event)
        try:
            encoded = ev.ENCODER.encode(event)
        except Exception as exc:
            raise encode_error(event, exc) from None
        ticket = self.writer.append(event, encoded)
        self._publish(event, encoded)
        return ticket

    def _publish(self, event: ev.Event, encoded: bytes) -> None:
        for cb in self._subscribers:
            try:
                cb(event, encoded)
            except Exception:
                log.exception("event subscriber failed; dropping it")
                self._remove_callback(None, cb)
        typed = self._typed_subscribers.get(type(event))
        if typed:
            for cb in typed:
                try:
                    cb(event, encoded)
                except Exception:
                    log.exception("event subscriber failed; dropping it")
                    self._remove_callback(type(event), cb)

    def on_runs_changed(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever a run starts or ends here."""
        self._runs_listeners.append(callback)
        return lambda: self._runs_listeners.remove(callback)

    def _log_write_failed(self, run_id: str, error: BaseException) -> None:
        """The log writer could not write some of ``run_id``'s events: the run stops, FAILED
        with that error (its callers see it; its run_finished says it, if it can be written)."""
        run = self.runs.get(run_id)
        if run is not None and run.store_error is None:
            run.store_error = error
            run.cancel(f"its events could not be written: {error}", by="store")

    def _runs_changed(self) -> None:
        for cb in list(self._runs_listeners):
            cb()

    # -- runs ---------------------------------------------------------------------------------

    async def run_graph(
        self,
        spec: NodeSpec,
        inputs: dict[str, Any],
        invoke: Invoke,
        *,
        entrypoint: str = "",
        start: RunStart | None = None,
    ) -> RunOutcome:
        """Open a run, execute ``invoke`` as its root node, return how the run ended.

        ``start``: how the run begins; a new run unless the caller passes a ``RetryRun`` or a
        ``ResumeRun``. ``entrypoint``: where its code is, for a later resume or retry."""
        async with self.open_run(spec.name, inputs, start or _NEW_RUN, entrypoint=entrypoint) as run:
            await run.resumable()
            run.returned(await self.execute_node(run, None, spec, inputs, invoke))
        return run.outcome

    def open_run(
        self, graph: str, inputs: dict[str, Any], start: RunStart, *, entrypoint: str = ""
    ) -> OpenRun:
        """A run from its first event to its last, around the block that executes it
        (``async with rt.open_run(...) as run``; see ``OpenRun``)."""
        return OpenRun(self, graph, inputs, start, entrypoint)

    async def _close_run(self, run: Run, t0: float) -> None:
        """Write how ``run`` ended, its last event, and let go of it: its log closes after the
        next flush (under strict durability, this waits until everything is on disk)."""
        outcome = run.outcome
        if run.store_error is not None:  # some of its events are not in its log
            outcome.status, outcome.error, outcome.outputs = ev.FAILED, run.store_error, None
        run.status = outcome.status
        if outcome.error is not None:
            outcome.error_info = failure_info(outcome.error)
        run.emit(
            ev.RunFinished,
            status=outcome.status,
            outputs=outcome.outputs,
            error=outcome.error_info,
            duration_s=time.monotonic() - t0,
        )
        self.writer.close_run(run.run_id)
        del self.runs[run.run_id]
        self._runs_changed()
        if self.durability == "strict":
            with trio.CancelScope(shield=True):
                await self.writer.wait_durable()

    async def execute_node(
        self,
        run: Run,
        parent: NodeHandle | None,
        spec: NodeSpec,
        inputs: dict[str, Any],
        invoke: Invoke,
        *,
        node_id: str | None = None,
    ) -> Any:
        """Run ``invoke`` as a node under ``parent``: return what it returned, or raise what
        ended it (see ``NodeHandle.end``). ``node_id``: the node of a static graph
        (``@graphify``) that its code named (see ``Run.place``).

        A journaled tool call is replayed instead. Otherwise the node is registered (so it
        can be cancelled and retried by path) and started; its attempts come to an outcome,
        and the node ends with it."""
        key, path = run.place(parent, spec.name, inputs, node_id)
        if spec.kind == "tool" and run.journal is not None:
            replayed, outputs = run.replayed_tool(parent, spec.name, key, inputs)
            if replayed:
                await trio.lowlevel.checkpoint()
                return outputs
        node = run.start_node(path, spec, parent, key, inputs)
        # The token is not kept: restoring the value (the parent, or None) reads the same, and a
        # Token per live node is one more object for the garbage collector to walk (B2).
        outer = current_node.get()
        current_node.set(node)
        try:
            try:
                # The attempts, until one is final. Each calls the node's code once, in a scope
                # of its own: it carries the node's deadline, and a cancel or a retry request
                # cancels it (see ``NodeHandle.cancel``, ``request_retry``);
                # ``NodeHandle.attempt_outcome`` says what came of it. A retry someone requested
                # starts the next one at once; a failure or a timeout that the retry policy
                # accepts, after a backoff (``_backoff``). Anything else is final. What comes
                # from outside the node (an enclosing scope cancelled, Ctrl-C) is no outcome of
                # an attempt: it passes to ``stopped_by``. Inline, not coroutines of their
                # own: every layer is a frame each wake-up of the node's task steps through
                # and an object the garbage collector walks while the node is live (B2).
                timeout_s = spec.timeout_s
                finishes = hasattr(invoke, "finish")
                while True:
                    node.attempt += 1
                    node.retry_requested_by = None
                    value: Any = None
                    failure: Exception | None = None
                    # ``with scope:`` spelled out: a ``with`` keeps the bound ``__exit__`` alive
                    # while the node runs, one more object per live node for the collector.
                    scope = node.attempt_scope = trio.CancelScope(
                        deadline=trio.current_time() + timeout_s if timeout_s is not None else math.inf)
                    scope.__enter__()
                    try:
                        try:
                            value = await invoke(node)
                            if finishes:
                                value = invoke.finish(value)  # type: ignore[attr-defined]
                        except Exception as exc:
                            failure = exc
                    except BaseException as exc:
                        if not scope.__exit__(type(exc), exc, exc.__traceback__):
                            raise
                    else:
                        scope.__exit__(None, None, None)
                    node.attempt_scope = None
                    outcome = node.attempt_outcome(scope, value, failure)
                    state = outcome.state
                    if state == ev.SUCCEEDED or state == ev.CANCELLED:
                        break
                    if state == RETRY_REQUESTED:
                        node.emit(ev.AttemptRetried, attempt=node.attempt,
                                  requested_by=node.retry_requested_by)
                        continue
                    if not spec.retry.should_retry(node.attempt, outcome.error):
                        break
                    cancelled = await self._backoff(node, outcome)
                    if cancelled is not None:
                        outcome = cancelled
                        break
            except BaseException as exc:
                outcome = node.stopped_by(exc)
            return await node.end(outcome)
        finally:
            current_node.set(outer)

    async def _backoff(self, node: NodeHandle, outcome: Outcome) -> Outcome | None:
        """Between a failed or timed-out attempt and the next: record it, wait the retry
        policy's delay (a cancel or retry request cuts it short). Returns the node's outcome
        when it was cancelled meanwhile, else None: the next attempt follows."""
        if outcome.state == ev.TIMED_OUT:  # recorded, though not the node's end
            node.emit_attempt(ev.NodeTimedOut, timeout_s=node.spec.timeout_s or 0.0)
        delay = node.spec.retry.delay(node.attempt)
        error = ev.error_info(outcome.error) if outcome.error is not None else None
        node.emit(ev.AttemptRetried, attempt=node.attempt, delay_s=delay, error=error)
        with trio.CancelScope() as backoff:
            node.attempt_scope = backoff
            await self.timer.sleep(delay)
        node.attempt_scope = None
        if node.cancel_requested:
            return Outcome(ev.CANCELLED, reason=node.cancel_reason, by=node.cancel_by)
        return None

    # -- control ------------------------------------------------------------------------------

    def find_run(self, run_id: str) -> Run:
        try:
            return self.runs[run_id]
        except KeyError:
            raise UnknownRun(run_id) from None

    def cancel(self, run_id: str, path: str | None = None, *, reason: str = "cancelled", by: str = "") -> None:
        run = self.find_run(run_id)
        if path is None:
            run.cancel(reason, by)
            return
        node = run.nodes.get(path)
        if node is None:
            raise UnknownNode(f"run {run_id} has no running node {path!r}")
        node.cancel(reason, by)

    def retry(self, run_id: str, path: str, *, by: str = "") -> None:
        run = self.find_run(run_id)
        node = run.nodes.get(path)
        if node is None or not node.request_retry(by):
            raise UnknownNode(f"run {run_id} has no running node {path!r} to retry")

    def cancel_all(self, reason: str, by: str = "") -> None:
        for run in list(self.runs.values()):
            run.cancel(reason, by)

    async def sleep(self, seconds: float) -> None:
        await self.timer.sleep(seconds)

    async def _watch_sigint(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """First Ctrl-C: cancel every run cleanly. Second: stop at once."""
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                if self.interrupted:
                    raise KeyboardInterrupt
                self.interrupted = True
                log.warning("interrupted: cancelling %d run(s); Ctrl-C again to stop at once", len(self.runs))
                self.cancel_all("interrupted (Ctrl-C)", by="signal")


@asynccontextmanager
async def open_runtime(config: RuntimeConfig | None = None) -> AsyncIterator[Runtime]:
    """Open the store and the engine's tasks for the duration of the block.

    On exit (normal, error or Ctrl-C) services are stopped, their background tasks cancelled,
    and every emitted event is written and fsync'd before this returns.
    """
    config = config or RuntimeConfig()
    layout = StoreLayout.at(config.home).ensure()
    rt: Runtime | None = None
    try:
        with unwrap_single():
            async with trio.open_nursery() as system:
                rt = Runtime(config, layout, system)
                async with _supervise(rt, system) as opened:
                    yield opened
    finally:
        if rt is not None:
            try:
                rt.writer.close()  # raises if a run's end could not be written: never a silent exit 0
            finally:
                rt.kv.close()
                rt.index.close()


@asynccontextmanager
async def _supervise(rt: Runtime, system: trio.Nursery) -> AsyncIterator[Runtime]:
    # A crash between log and index lost nothing: index what the logs hold beyond its marks.
    await trio.to_thread.run_sync(rt.index.catch_up)
    await trio.to_thread.run_sync(rt.blobs.sweep_orphan_parts)  # blobs half written by a crash
    await system.start(rt.writer.run)
    await system.start(rt.timer.run)
    if rt.config.handle_sigint and threading.current_thread() is threading.main_thread():
        await system.start(rt._watch_sigint)
    if rt.config.sidecar:
        from .sidecar.server import TCP_ENV, Sidecar

        tcp = rt.config.sidecar_tcp or os.environ.get(TCP_ENV) or None
        rt.sidecar = await system.start(Sidecar(rt, tcp=tcp).run)
        rt.asks.add_source(rt.sidecar.answer_source())
    token = current_runtime.set(rt)
    try:
        with unwrap_single():
            async with trio.open_nursery() as services:
                rt._service_nursery = services
                try:
                    await rt._start_services()
                    yield rt
                finally:
                    services.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await rt._close_services()
    finally:
        rt._service_nursery = None
        current_runtime.reset(token)
        if rt.sidecar is not None:
            with trio.CancelScope(shield=True):
                await rt.sidecar.drain()
        # Stops the timer, the sidecar and the writer; the writer flushes and fsyncs on its way out.
        system.cancel_scope.cancel()


def runtime_or_none() -> Runtime | None:
    return current_runtime.get()


def node_or_none() -> NodeHandle | None:
    return current_node.get()


__all__ = [
    "Failed",
    "NodeHandle",
    "NodeSpec",
    "Run",
    "RunOutcome",
    "Runtime",
    "RuntimeConfig",
    "current_node",
    "current_runtime",
    "open_runtime",
]
