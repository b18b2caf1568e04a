"""Running a static DAG: each node once its dependencies succeeded, at most N at a time.

Pure scheduling: what a node *is* (a tool call under the engine) is the caller's ``run_node``;
this module only knows ids and dependencies. Nothing durable depends on the order in which
ready nodes start (trio varies it): a node's identity is its id, its inputs come from its
dependencies' results, never from "what ran before".

Failure policy:

- ``on_error="stop"`` (default): the first failure stops the graph. Running nodes are
  cancelled (through ``cancel_running``, so they can be told why), nothing new starts.
- ``on_error="continue"``: independent branches run to their end; only the dependants of a
  failed node (transitively) are not run, and are reported ``skipped`` with the node whose
  failure they waited on.

Either way the caller gets a ``DagOutcome`` with every node's state; raising is its choice.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs
import trio

SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
SKIPPED = "skipped"  # a dependency failed or was cancelled: never started
NOT_RUN = "not_run"  # the graph stopped before this node was ready

ON_ERROR = ("stop", "continue")


class CycleError(ValueError):
    """The dependencies form a cycle: no order runs them all."""


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Ids in an order where every node comes after its dependencies; ties keep the order of
    ``deps`` (so the order printed for a graph is the order its code declared it)."""
    for node, ds in deps.items():
        for d in ds:
            if d not in deps:
                raise ValueError(f"node {node!r} depends on unknown node {d!r}")
    waiting = {n: len(set(ds)) for n, ds in deps.items()}
    dependants: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in set(ds):
            dependants[d].append(n)
    position = {n: i for i, n in enumerate(deps)}
    ready = [(position[n], n) for n, k in waiting.items() if k == 0]  # already a heap: sorted
    order: list[str] = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for m in dependants[n]:
            waiting[m] -= 1
            if waiting[m] == 0:
                heapq.heappush(ready, (position[m], m))
    if len(order) != len(deps):
        stuck = [n for n in deps if waiting[n] > 0]
        raise CycleError(f"the graph has a cycle through: {', '.join(stuck[:10])}")
    return order


@attrs.define
class DagOutcome:
    states: dict[str, str]
    errors: dict[str, BaseException] = attrs.field(factory=dict)
    # The node whose failure stopped the graph (or the first to fail with "continue").
    first_failed: str | None = None
    # For a skipped node: the failed node it waited on.
    blocked_by: dict[str, str] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return self.first_failed is None


async def run_dag(
    deps: Mapping[str, Sequence[str]],
    run_node: Callable[[str], Awaitable[object]],
    *,
    max_concurrency: int | None = None,
    on_error: str = "stop",
    is_cancellation: Callable[[BaseException], bool] = lambda exc: False,
    cancel_running: Callable[[list[str], str], None] | None = None,
) -> DagOutcome:
    """Run every node of ``deps`` (id -> ids it depends on) with ``run_node(id)``.

    ``max_concurrency``: at most this many ``run_node`` calls at once (None: no limit).
    ``is_cancellation(exc)``: the node was cancelled (not failed); it still stops its
    dependants. ``cancel_running(ids, reason)``: how to stop running nodes when the graph
    stops; by default their tasks are cancelled.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if max_concurrency is not None and (not isinstance(max_concurrency, int) or max_concurrency < 1):
        raise ValueError(f"max_concurrency must be a whole number >= 1, got {max_concurrency!r}")
    order = topological_order(deps)
    limiter = trio.CapacityLimiter(max_concurrency or math.inf)
    waiting = {n: len(set(ds)) for n, ds in deps.items()}
    dependants: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in set(ds):
            dependants[d].append(n)
    out = DagOutcome(states={n: NOT_RUN for n in deps})
    running: set[str] = set()
    stopping = False

    def skip_dependants(failed: str) -> None:
        stack = list(dependants[failed])
        while stack:
            m = stack.pop()
            if out.states[m] == NOT_RUN:
                out.states[m] = SKIPPED
                out.blocked_by[m] = failed
                stack.extend(dependants[m])

    async def step(node: str, nursery: trio.Nursery) -> bool:
        """Run ``node`` under the limiter; True when it succeeded."""
        nonlocal stopping
        try:
            # A free slot is taken without a trip through the scheduler (run_node yields
            # anyway); the limiter refuses it while others wait, so the queue stays FIFO.
            limiter.acquire_nowait()
        except trio.WouldBlock:
            await limiter.acquire()
        try:
            if stopping or out.states[node] != NOT_RUN:
                return False
            running.add(node)
            try:
                await run_node(node)
            except Exception as exc:
                running.discard(node)
                out.errors[node] = exc
                was_stopped = stopping
                out.states[node] = CANCELLED if (was_stopped or is_cancellation(exc)) else FAILED
                if was_stopped:
                    return False  # cancelled because the graph stops: not a failure of its own
                if out.first_failed is None:
                    out.first_failed = node
                skip_dependants(node)
                if on_error == "stop":
                    stopping = True
                    reason = f"node {node} {out.states[node]}: the graph stops (on_error='stop')"
                    if cancel_running is not None and running:
                        cancel_running(sorted(running), reason)
                    elif running:
                        nursery.cancel_scope.cancel()
                return False
            except BaseException:  # trio.Cancelled: the graph, or something above it, stops
                running.discard(node)
                out.states[node] = CANCELLED
                raise
            running.discard(node)
            out.states[node] = SUCCEEDED
            return True
        finally:
            limiter.release()

    async def one(node: str | None, nursery: trio.Nursery) -> None:
        # The first dependant a node makes ready runs on in this task (a chain costs no task
        # per node); the others get tasks of their own.
        while node is not None:
            if not await step(node, nursery):
                return
            follow = None
            for m in dependants[node]:
                waiting[m] -= 1
                if waiting[m] == 0 and not stopping and out.states[m] == NOT_RUN:
                    if follow is None:
                        follow = m
                    else:
                        nursery.start_soon(one, m, nursery, name=f"dag node {m}")
            node = follow

    async with trio.open_nursery() as nursery:
        for n in order:
            if waiting[n] == 0:
                nursery.start_soon(one, n, nursery, name=f"dag node {n}")
    return out


__all__ = [
    "CANCELLED", "FAILED", "NOT_RUN", "SKIPPED", "SUCCEEDED", "CycleError", "DagOutcome",
    "run_dag", "topological_order",
]
