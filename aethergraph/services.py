"""External services a node reaches as ``context.<name>()``.

Register once (``register_context_service("jobs", FakeJobRunner())``) and every node can call
``context.jobs()``. A service that subclasses ``Service`` gets a lifecycle tied to the runtime
(``start`` when it opens, ``close`` when it closes), ``spawn`` for background work that lives
in the runtime's service nursery (so nothing is left running when the runtime closes), and
``critical()``, a lock for state shared between concurrent nodes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from aethergraph.runtime.engine import current_runtime

from .context import NodeContext, current_context

_REGISTRY: dict[str, Any] = {}


def register_context_service(name: str, service: Any) -> Any:
    """Make ``service`` reachable from every node as ``context.<name>()``."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"service name must be a public identifier, got {name!r}")
    if hasattr(NodeContext, name):
        raise ValueError(f"service name {name!r} would hide NodeContext.{name}()")
    _REGISTRY[name] = service
    rt = current_runtime.get()
    if rt is not None:
        rt.attach_service(name, service)
    return service


def unregister_context_service(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered_services() -> dict[str, Any]:
    return dict(_REGISTRY)


class Service:
    """Base class for services with a lifecycle and background work."""

    async def start(self) -> None:
        """Called when a runtime opens (or when registered into an open one)."""

    async def close(self) -> None:
        """Called when the runtime closes, after its background tasks were cancelled."""

    @property
    def context(self):
        """The NodeContext of the node calling into this service right now (or None)."""
        return current_context()

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Run ``fn(*args)`` in the background, supervised by the runtime's service nursery."""
        rt = current_runtime.get()
        if rt is None:
            raise RuntimeError(f"{type(self).__name__}.spawn needs an open runtime (call it from a node)")
        rt.spawn(fn, *args, name=name or getattr(fn, "__qualname__", None))

    def critical(self):
        """``async with self.critical():`` — one caller at a time in the block."""
        lock = self.__dict__.get("_ag_lock")
        if lock is None:
            lock = self.__dict__["_ag_lock"] = trio.Lock()
        return lock
