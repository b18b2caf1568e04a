"""AetherGraph: code-native agents and job orchestration on trio.

    from aethergraph import graph_fn, tool, NodeContext

Names are resolved lazily so that ``import aethergraph`` costs almost nothing; the engine (and
trio) load when the first name is used. ``__getattr__`` below is the package's one lazy spot:
every module under it imports what it needs at its top.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "graph_fn": "aethergraph.decorators",
    "tool": "aethergraph.decorators",
    "graphify": "aethergraph.static_graph",
    "InputError": "aethergraph.typed",
    "GraphFunction": "aethergraph.decorators",
    "ToolFunction": "aethergraph.decorators",
    "NodeContext": "aethergraph.context",
    "current_context": "aethergraph.context",
    "register_context_service": "aethergraph.services",
    "Service": "aethergraph.services",
    "start": "aethergraph.api",
    "run": "aethergraph.api",
    "run_async": "aethergraph.api",
    "open_runtime": "aethergraph.api",
    "sleep": "aethergraph.polling",
    "poll": "aethergraph.polling",
    "poll_until": "aethergraph.polling",
    "RetryPolicy": "aethergraph.runtime.retry",
    "Failed": "aethergraph.runtime.engine",
    "GraphFailed": "aethergraph.runtime.errors",
    "AetherGraphError": "aethergraph.runtime.errors",
    "NodeCancelled": "aethergraph.runtime.errors",
    "NodeTimeout": "aethergraph.runtime.errors",
    "PollTimeout": "aethergraph.runtime.errors",
    "AskError": "aethergraph.runtime.errors",
    "AskTimeout": "aethergraph.runtime.errors",
    "InvalidAnswer": "aethergraph.runtime.errors",
    "NoAnswerAvailable": "aethergraph.runtime.errors",
    "StoreError": "aethergraph.runtime.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from aethergraph.runtime.errors import (
        AetherGraphError,
        AskError,
        AskTimeout,
        InvalidAnswer,
        NoAnswerAvailable,
        NodeCancelled,
        NodeTimeout,
        PollTimeout,
        StoreError,
    )
    from aethergraph.runtime.engine import Failed
    from aethergraph.runtime.errors import GraphFailed
    from aethergraph.runtime.retry import RetryPolicy

    from .api import open_runtime, run, run_async, start
    from .context import NodeContext, current_context
    from .decorators import GraphFunction, ToolFunction, graph_fn, tool
    from .static_graph import graphify
    from .typed import InputError
    from .polling import poll, poll_until, sleep
    from .services import Service, register_context_service


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aethergraph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
