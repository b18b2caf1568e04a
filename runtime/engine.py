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
"""

from __future__ import annotations

import contextvars
import logging
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
    _children: dict[str, int] = attrs.field(factory=dict)
    _counters: dict[str, int] = attrs.field(factory=dict)
    # On re-execution: the journaled tool calls this node asked for again, and the tool calls
    # it made that the journal has no match for (by tool name) -- see ``replaced_call``.
    claimed: set[str] = attrs.field(factory=set)
    unmatched: dict[str, list[Any]] = attrs.field(factory=dict)
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
        n = self._counters.get(what, 0) + 1
        self._counters[what] = n
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
        n = self._children.get(name, 0)
        while True:
            n += 1
            path = f"{self.path}/{name}" if n == 1 else f"{self.path}/{name}#{n}"
            if not reuse or path not in j.taken_paths:
                break
        self._children[name] = n
        return path

    def replaced_call(self) -> Divergence | None:
        """After this node ran: a finished journaled tool call under it that it did not make
        again while it made a call of the same tool the journal has no match for."""
        j = self.run.journal
        if j is None or not self.unmatched:
            return None
        for name, made in self.unmatched.items():
            replaced = j.replaced_calls(self.key, name, self.claimed)
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
    _roots: dict[str, int] = attrs.field(factory=dict)

    def append(self, event: ev.Event) -> int:
        """Stamp ``event`` with its place in this run (seq, ts) and queue it for the log and
        the subscribers. Returns the writer's ticket (see ``LogWriter.wait_durable``)."""
        self.seq += 1
        event.seq = self.seq
        ts = _now()
        if ts < self.last_ts:  # keep a run's timeline monotonic across clock steps
            ts = self.last_ts
        self.last_ts = ts
        event.ts = ts
        rt = self.runtime
        if _FAULT is not None and _FAULT.hits(event):
            if not _FAULT.after_flush:
                _FAULT.crash()
            rt.writer.crash_after_flush = _FAULT.crash
        subscribers = rt._subscribers or rt._typed_subscribers.get(type(event))
        try:
            if subscribers:
                try:
                    encoded = ev.ENCODER.encode(event)
                except Exception as exc:
                    raise encode_error(event, exc) from None
                ticket = rt.writer.append(event, encoded)
                rt._publish(event, encoded)
            else:
                ticket = rt.writer.append(event)
        except Exception:
            self.seq -= 1  # nothing was recorded: the next event takes this place
            raise
        return ticket

    def emit(self, cls: type[ev.Event], node: str = "", **fields: Any) -> tuple[ev.Event, int]:
        event = cls(run_id=self.run_id, node=node, **fields)
        return event, self.append(event)

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


def _only_cancellations(exc: BaseException) -> NodeCancelled | None:
    """The first ``NodeCancelled`` when ``exc`` is a group of nothing but node cancellations
    (and the ``Cancelled`` of the siblings they took down)."""
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
        It must not block: a slow consumer queues and drops itself, it never slows the run."""
        lists = (
            [self._subscribers]
            if types is None
            else [self._typed_subscribers.setdefault(t, []) for t in types]
        )
        for lst in lists:
            lst.append(callback)

        def unsubscribe() -> None:
            for lst in lists:
                if callback in lst:
                    lst.remove(callback)

        return unsubscribe

    def _publish(self, event: ev.Event, encoded: bytes) -> None:
        for lst in (self._subscribers, self._typed_subscribers.get(type(event), ())):
            for cb in list(lst):
                try:
                    cb(event, encoded)
                except Exception:
                    log.exception("event subscriber failed; dropping it")
                    if cb in lst:
                        lst.remove(cb)

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
        run_id: str | None = None,
        journal: Journal | None = None,
        resume: bool = False,
        attempt_of: str = "",
    ) -> RunOutcome:
        """Open a run, execute ``invoke`` as its root node, record how it ended.

        ``resume``: continue the existing run ``journal.run_id`` in its own log, replaying what
        the journal holds. Otherwise a new run; with a ``journal`` (``ag retry``) its successful
        tool results are replayed.
        """
        if resume:
            if journal is None:
                raise ValueError("resume needs the run's journal")
            run_id = journal.run_id
            if run_id in self.runs:
                raise AetherGraphError(f"run {run_id} is already running here")
        run_id = run_id or new_run_id()
        self.writer.open_run(run_id, resume=resume)  # owns the log from here (RunBusy if not)
        run = Run(self, run_id, spec.name, journal=journal)
        self.runs[run_id] = run
        self._runs_changed()
        t0 = time.monotonic()
        if resume:
            run.seq = journal.last_seq
            run.emit(
                ev.RunResumed,
                attempt=journal.attempts + 1,
                pid=os.getpid(),
                host=HOST,
                replayable_steps=journal.replayable_steps,
            )
        else:
            _, ticket = run.emit(
                ev.RunStarted,
                graph=spec.name,
                inputs=inputs,
                entrypoint=entrypoint,
                pid=os.getpid(),
                host=HOST,
                durability=self.durability,
                attempt_of=attempt_of,
            )
        outcome = RunOutcome(run_id, ev.RUNNING)
        raised: BaseException | None = None
        try:
            with run.scope:
                if self.durability == "strict" and not resume:
                    await self.writer.wait_durable(ticket)  # a crash from here on leaves a resumable run
                outputs = await self.execute_node(run, None, spec, inputs, invoke)
                if isinstance(outputs, Failed):
                    outcome.status = ev.FAILED
                    outcome.outputs = outputs.outputs
                    outcome.error = GraphFailed(outputs.message, outputs.outputs)
                else:
                    outcome.status = ev.SUCCEEDED
                    outcome.outputs = outputs
            if run.scope.cancelled_caught:
                outcome.status = ev.CANCELLED
                outcome.error = NodeCancelled(spec.name, run.cancel_reason, run.cancel_by)
            if run.diverged is not None:
                # Whatever the code did with the error, a replay that diverged is stopped.
                outcome.status, outcome.error, outcome.outputs = ev.FAILED, run.diverged, None
        except NodeCancelled as exc:
            outcome.status, outcome.error = ev.CANCELLED, exc
        except NodeTimeout as exc:
            outcome.status, outcome.error = ev.TIMED_OUT, exc
        except Exception as exc:
            outcome.status, outcome.error = ev.FAILED, run.diverged or exc
        except BaseException as exc:  # KeyboardInterrupt, or cancellation from outside the run
            outcome.status, outcome.error = ev.CANCELLED, exc
            raised = exc
        finally:
            if run.store_error is not None:  # some of its events are not in its log
                outcome.status, outcome.error, outcome.outputs = ev.FAILED, run.store_error, None
            run.status = outcome.status
            err = outcome.error
            if err is not None:
                outcome.error_info = failure_info(err)
            run.emit(
                ev.RunFinished,
                status=outcome.status,
                outputs=outcome.outputs,
                error=outcome.error_info,
                duration_s=time.monotonic() - t0,
            )
            self.writer.close_run(run_id)
            del self.runs[run_id]
            self._runs_changed()
            if self.durability == "strict":
                with trio.CancelScope(shield=True):
                    await self.writer.wait_durable()
        if raised is not None:
            raise raised
        return outcome

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
        """Run ``invoke`` as a node under ``parent``. ``node_id``: the node of a static graph
        (``@graphify``) that its code named: its key is ``<parent key>/@<id>`` and its path
        ``<parent path>/<id>``, whatever its arguments, so a resume finds it by id."""
        if node_id is not None and parent is not None:
            key = f"{parent.key}/@{node_id}"
            path = f"{parent.path}/{node_id}"
        elif parent is not None:
            base = call_base(parent.key, spec.name, inputs)
            key = with_occurrence(base, parent.next_count(base))
            path = parent.child_path(spec.name, key)
        else:
            key = path = run.root_path(spec.name)
        journal = run.journal
        if spec.kind == "tool" and journal is not None:
            if parent is None:
                pass  # a tool run on its own: nothing above it to compare calls with
            elif key in journal.tools:
                parent.claimed.add(key)
            else:
                parent.unmatched.setdefault(spec.name, []).append(inputs)
            replayed, outputs = journal.replay_tool(key)
            if replayed:
                await trio.lowlevel.checkpoint()
                return outputs
        node = NodeHandle(run, path, spec, parent, key)
        run.nodes[path] = node
        node.emit(
            ev.NodeStarted,
            name=spec.name,
            kind=spec.kind,
            inputs=inputs,
            parent=parent.path if parent is not None else "",
            step=key,
        )
        token = current_node.set(node)
        t0 = time.monotonic()
        done = False  # a terminal event has been emitted

        def finish(state: str, cls: type[ev.Event], **fields: Any) -> int:
            nonlocal done
            done = True
            node.state = state
            return node.emit(cls, attempt=node.attempt, duration_s=time.monotonic() - t0, **fields)[1]

        try:
            while True:
                node.attempt += 1
                node.retry_requested_by = None
                failure: Exception | None = None
                with trio.CancelScope() as attempt_scope:
                    if spec.timeout_s is not None:
                        attempt_scope.deadline = trio.current_time() + spec.timeout_s
                    node.attempt_scope = attempt_scope
                    try:
                        result = await invoke(node)
                    except NodeCancelled:
                        raise
                    except Exception as exc:
                        cancelled = _only_cancellations(exc)
                        if cancelled is not None:
                            # A cancelled child not caught in a nursery: like a bare one, a
                            # decision someone took, so this node ends CANCELLED (not FAILED)
                            # and is never retried for it.
                            raise cancelled from None
                        failure = exc
                node.attempt_scope = None
                if node.cancel_requested:
                    break
                if attempt_scope.cancelled_caught and node.retry_requested_by is not None:
                    node.emit(
                        ev.AttemptRetried,
                        attempt=node.attempt,
                        requested_by=node.retry_requested_by,
                    )
                    continue
                timed_out = attempt_scope.cancelled_caught
                if not timed_out and failure is None:
                    diverged = node.replaced_call()
                    if diverged is not None:
                        run.diverged = run.diverged or diverged
                        tag_node(diverged, path)
                        finish(ev.FAILED, ev.NodeFailed, error=failure_info(diverged, with_traceback=False))
                        raise diverged
                    if isinstance(result, Failed):
                        finish(ev.FAILED, ev.NodeFailed, outputs=result.outputs,
                               error=ev.ErrorInfo(type="Failed", message=result.message))
                    else:
                        ticket = finish(ev.SUCCEEDED, ev.NodeFinished, outputs=result)
                        if spec.kind == "tool" and self.durability == "strict":
                            # The journal has the result before anything can act on it.
                            with trio.CancelScope(shield=True):
                                await self.writer.wait_durable(ticket)
                    return result
                if timed_out:
                    node.emit(
                        ev.NodeTimedOut,
                        timeout_s=spec.timeout_s or 0.0,
                        attempt=node.attempt,
                        duration_s=time.monotonic() - t0,
                    )
                if spec.retry.should_retry(node.attempt, failure):
                    delay = spec.retry.delay(node.attempt)
                    node.emit(
                        ev.AttemptRetried,
                        attempt=node.attempt,
                        delay_s=delay,
                        error=ev.error_info(failure) if failure is not None else None,
                    )
                    with trio.CancelScope() as backoff:
                        node.attempt_scope = backoff
                        await self.timer.sleep(delay)
                    node.attempt_scope = None
                    if node.cancel_requested:
                        break
                    continue
                if timed_out:
                    done = True
                    node.state = ev.TIMED_OUT
                    raise NodeTimeout(path, spec.timeout_s or 0.0, node.attempt)
                tag_node(failure, path)
                finish(ev.FAILED, ev.NodeFailed, error=failure_info(failure))
                raise failure
            # Only reachable when someone cancelled this node.
            finish(ev.CANCELLED, ev.NodeCancelled, reason=node.cancel_reason, by=node.cancel_by)
            raise NodeCancelled(path, node.cancel_reason, node.cancel_by)
        except NodeCancelled as exc:
            if not done:
                finish(ev.CANCELLED, ev.NodeCancelled, reason=f"child {exc.path} cancelled: {exc.reason}", by=exc.by)
                raise NodeCancelled(path, f"child {exc.path} cancelled: {exc.reason}", exc.by) from exc
            raise
        except BaseException as exc:
            if not done:
                if isinstance(exc, trio.Cancelled):
                    reason, by = self._outer_cancel_reason(node)
                elif isinstance(exc, KeyboardInterrupt):
                    reason, by = "interrupted (KeyboardInterrupt)", "signal"
                elif isinstance(exc, Exception):  # e.g. an error raised while retrying
                    tag_node(exc, path)
                    finish(ev.FAILED, ev.NodeFailed, error=failure_info(exc))
                    raise
                else:
                    reason, by = f"interrupted ({type(exc).__name__})", ""
                finish(ev.CANCELLED, ev.NodeCancelled, reason=reason, by=by)
            raise
        finally:
            current_node.reset(token)
            node.attempt_scope = None
            if run.nodes.get(path) is node:
                del run.nodes[path]

    @staticmethod
    def _outer_cancel_reason(node: NodeHandle) -> tuple[str, str]:
        """Why a node saw ``trio.Cancelled`` from outside its own scopes."""
        p = node.parent
        while p is not None:
            if p.cancel_requested:
                return f"parent {p.path} cancelled: {p.cancel_reason}", p.cancel_by
            if p.attempt_scope is not None and p.attempt_scope.cancel_called:
                if p.retry_requested_by is not None:
                    return f"parent {p.path} is being retried", p.retry_requested_by
                return f"parent {p.path} timed out", "deadline"
            p = p.parent
        run = node.run
        if run.scope.cancel_called:
            return f"run cancelled: {run.cancel_reason}", run.cancel_by
        return "cancelled by an enclosing cancel scope", ""

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
