"""NodeContext: how a node talks to the world.

One per node call, injected as the ``context`` keyword. Everything it hands out (channel,
memory, artifacts, kv, logger, services) is bound to this node, so every fact they record
carries the run id and node path without the caller saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from aethergraph.runtime.engine import current_node
from aethergraph.runtime.ids import derived_id

from .artifacts import Artifacts
from .channel import Channel
from .kv import KV
from .logger import NodeLogger
from .memory import Memory
from .polling import poll

if TYPE_CHECKING:
    from aethergraph.runtime.engine import NodeHandle


class NodeContext:
    __slots__ = ("_node", "_channels", "_memory", "_artifacts", "_logger", "_kv")

    def __init__(self, node: NodeHandle) -> None:
        self._node = node
        self._channels: dict[str, Channel] = {}
        self._memory: Memory | None = None
        self._artifacts: Artifacts | None = None
        self._logger: NodeLogger | None = None
        self._kv: dict[str, KV] = {}

    # -- identity -----------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._node.run.run_id

    @property
    def node_id(self) -> str:
        """The node's path in its run, e.g. ``submit_poll_notify/submit_job``."""
        return self._node.path

    @property
    def graph_id(self) -> str:
        return self._node.run.graph

    @property
    def attempt(self) -> int:
        return self._node.attempt

    @property
    def idempotency_key(self) -> str:
        """Stable for this node across resumes of its run: give it to a service so that a call
        re-executed after a crash is recognised instead of done twice."""
        # From the node's key (what the code asked for), not its path (when it ran).
        return f"{self._node.run.run_id}/{derived_id('step', self._node.key)}"

    def __repr__(self) -> str:
        return f"<NodeContext run={self.run_id} node={self.node_id}>"

    # -- the world ----------------------------------------------------------------------------

    def channel(self, key: str | None = None) -> Channel:
        """Human I/O: ``send_text``, ``ask_text``, ``ask_approval``, ``ask_choice``, ``progress``."""
        key = key or "console"
        ch = self._channels.get(key)
        if ch is None:
            ch = self._channels[key] = Channel(self._node, key)
        return ch

    def memory(self) -> Memory:
        if self._memory is None:
            self._memory = Memory(self._node)
        return self._memory

    def artifacts(self) -> Artifacts:
        if self._artifacts is None:
            self._artifacts = Artifacts(self._node)
        return self._artifacts

    def kv(self, namespace: str = "default") -> KV:
        kv = self._kv.get(namespace)
        if kv is None:
            kv = self._kv[namespace] = KV(self._node.runtime, namespace)
        return kv

    def logger(self) -> NodeLogger:
        if self._logger is None:
            self._logger = NodeLogger(self._node)
        return self._logger

    def services(self) -> dict[str, Any]:
        """Every registered service by name."""
        return dict(self._node.runtime.services)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        services = self._node.runtime.services
        if name in services:
            service = services[name]
            return lambda: service
        raise AttributeError(
            f"NodeContext has no attribute or registered service {name!r}; "
            f"registered services: {', '.join(sorted(services)) or 'none'}"
        )

    # -- fan-out ------------------------------------------------------------------------------

    async def map(
        self,
        fn: Any,
        items: Any,
        *,
        max_concurrency: int = 8,
        on_error: str = "collect",
        spread: bool = False,
    ) -> list[Any]:
        """Call the tool or graph_fn ``fn`` once per item, each call a child node of this one,
        at most ``max_concurrency`` at a time; the results in the order of ``items``.

        Each item is ``fn``'s first argument (``spread=True``: a dict item is its keyword
        arguments). ``on_error="collect"``: a child that fails or is cancelled leaves its
        exception in its slot (``NodeCancelled`` for a cancelled one) and the others go on;
        ``"raise"``: the first error stops the rest and is raised as itself, not as an
        exception group. A cancellation of this node itself is never collected."""
        return await map_nodes(self, fn, items, max_concurrency=max_concurrency,
                               on_error=on_error, spread=spread)

    # -- time ---------------------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Sleep on the runtime's shared timer (cheap for thousands of concurrent pollers)."""
        await self._node.runtime.timer.sleep(seconds)

    def poll(self, interval_s: float, *, timeout_s: float | None = None, what: str = ""):
        """``async for n in context.poll(0.5, timeout_s=600): ...`` — see ``aethergraph.poll``."""
        return poll(interval_s, timeout_s=timeout_s, what=what or f"node {self.node_id}")


MAP_ON_ERROR = ("collect", "raise")


async def map_nodes(ctx: NodeContext, fn: Any, items: Any, *, max_concurrency: int, on_error: str,
                    spread: bool) -> list[Any]:
    # A node function is what ``@tool``/``@graph_fn`` made: it can start a run of its own.
    # (Told by that rather than by its class: the decorators import this module.)
    if not callable(getattr(fn, "start_run", None)):
        raise TypeError(f"map() needs a @tool or @graph_fn (each call is a node), got {fn!r}")
    if on_error not in MAP_ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(MAP_ON_ERROR)}, got {on_error!r}")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be a whole number >= 1, got {max_concurrency!r}")
    items = list(items)
    if spread:
        bad = next((i for i, item in enumerate(items) if not isinstance(item, dict)), None)
        if bad is not None:
            raise TypeError(f"map(spread=True): item {bad} is a {type(items[bad]).__name__}, not a dict")
    results: list[Any] = [None] * len(items)
    first_error: list[BaseException] = []
    next_index = iter(range(len(items)))

    async def worker(scope: trio.CancelScope) -> None:
        # Workers take items in order: with a limit of N, items start in input order.
        for i in next_index:
            item = items[i]
            try:
                if spread:
                    results[i] = await fn(context=ctx, **item)
                else:
                    results[i] = await fn(item, context=ctx)
            except Exception as exc:
                if on_error == "collect":
                    results[i] = exc
                    continue
                if not first_error:
                    first_error.append(exc)
                scope.cancel()
                return

    async with trio.open_nursery() as nursery:
        for _ in range(min(max_concurrency, len(items))):
            nursery.start_soon(worker, nursery.cancel_scope)
    if first_error:
        raise first_error[0]
    return results


def context_for(node: NodeHandle) -> NodeContext:
    ctx = node.user_context
    if ctx is None:
        ctx = node.user_context = NodeContext(node)
    return ctx


def current_context() -> NodeContext | None:
    """The NodeContext of the node the calling task runs in, if any."""
    node = current_node.get()
    return None if node is None else context_for(node)
