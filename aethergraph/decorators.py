"""``@graph_fn`` and ``@tool``: plain Python functions become supervised nodes.

Calling a decorated function returns a coroutine. Where it runs decides what it is:

- inside a node (the ``context=`` of a node is passed, or the call happens in a node's task):
  a child node of the same run;
- at top level: a new run, in the runtime that is open, or in one opened for this call alone.

``import aethergraph`` stays cheap because the package's names resolve lazily
(``aethergraph/__init__.py``); importing this module loads the engine.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

import trio

from aethergraph.runtime.engine import Failed, NodeSpec, current_node, current_runtime
from aethergraph.runtime.errors import GraphFailed
from aethergraph.runtime.retry import RetryPolicy

from .api import open_runtime, run
from .context import context_for
from .typed import TypedParams

_MISSING = object()
# While a ``@graphify`` body runs: the builder its tool calls add nodes to (a
# ``static_graph.Builder``). Here, below ``static_graph``, because every node call checks it.
building: contextvars.ContextVar[Any] = contextvars.ContextVar("aethergraph_graphify_builder", default=None)


class MissingOutputs(ValueError):
    """A tool returned a result without some of the outputs it declared."""


class _NodeFunction:
    kind = "graph_fn"

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None,
        inputs: Sequence[str] | None,
        outputs: Sequence[str] | None,
        version: str,
        timeout_s: float | None,
        retries: int | None,
        retry: Any,
        thread: bool = False,
    ) -> None:
        if retries is not None and retry is not None:
            raise TypeError("give either retries= or retry=, not both")
        self.fn = fn
        self.name = name or fn.__name__
        if "/" in self.name or "#" in self.name or not self.name:
            raise ValueError(f"node name {self.name!r} must be non-empty without '/' or '#'")
        self.inputs = list(inputs) if inputs is not None else None
        self.outputs = list(outputs) if outputs is not None else None
        self.version = version
        self.thread = thread
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self.wants_context = "context" in self.signature.parameters
        policy = retry if retry is not None else RetryPolicy.from_retries(retries)
        self._spec_args = (self.name, self.kind, policy, timeout_s)
        self._spec = None
        self._typed: Any = _MISSING  # see ``typed``: resolved on first call
        functools.update_wrapper(self, fn)

    @property
    def typed(self):
        """The parameters structured with cattrs (``aethergraph.typed``), or None."""
        if self._typed is _MISSING:
            self._typed = TypedParams.of(self.fn, self.signature)
        return self._typed

    def prepare_inputs(self, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(inputs as the log records them, inputs as the function gets them): typed
        parameters structured (raises ``InputError`` naming the field), the rest as given."""
        typed = self.typed
        if typed is None:
            return inputs, inputs
        return typed.prepare(inputs)

    @property
    def spec(self):
        if self._spec is None:
            name, kind, policy, timeout_s = self._spec_args
            self._spec = NodeSpec(name=name, kind=kind, retry=policy, timeout_s=timeout_s)
        return self._spec

    @property
    def entrypoint(self) -> str:
        """Where to find this function again (for ``ag resume``): ``file.py:name`` for a script,
        ``package.module:name`` otherwise."""
        module = getattr(self.fn, "__module__", "") or ""
        qual = getattr(self.fn, "__qualname__", self.name)
        if (
            module == "__main__"
            or module.startswith("_ag_target_")  # loaded from a file by `ag run file.py:fn`
            or not _importable(module)
        ):
            code = getattr(self.fn, "__code__", None)
            if code is not None:
                return f"{code.co_filename}:{qual}"
        return f"{module}:{qual}"

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}>"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    # -- calling ------------------------------------------------------------------------------

    def __call__(self, *args: Any, context: Any = None, **kwargs: Any) -> Any:
        builder = building.get()
        if builder is not None:  # inside a @graphify body: a node of its DAG, not a call
            return builder.add(self, args, kwargs)
        if "_after" in kwargs or "_id" in kwargs:
            raise TypeError(f"{self.name}(): _after= and _id= are for calls inside a @graphify body")
        return self._call(args, kwargs, context)

    def _inputs(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        if not args:
            return kwargs
        bound = self.signature.bind_partial(*args, **kwargs)
        return dict(bound.arguments)

    def _normalize(self, result: Any) -> Any:
        return result

    def _invoker(self, args: tuple, kwargs: dict) -> _Invoke:
        return _Invoke(self, args, kwargs)

    async def _call(self, args: tuple, kwargs: dict, context: Any) -> Any:
        if context is not None:
            parent = getattr(context, "_node", None)
            if parent is None:
                raise TypeError(f"context= must be a NodeContext, got {type(context).__name__}")
        else:
            parent = current_node.get()
        inputs = self._inputs(args, kwargs)
        if self.typed is not None:
            inputs, structured = self.typed.prepare(inputs)
            invoke = self._invoker((), structured)
        else:
            invoke = self._invoker(args, kwargs)
        if parent is not None:
            return await parent.runtime.execute_node(parent.run, parent, self.spec, inputs, invoke)
        rt = current_runtime.get()
        if rt is not None:
            return await self._top_level(rt, inputs, invoke)
        async with open_runtime() as rt:
            return await self._top_level(rt, inputs, invoke)

    async def _top_level(self, rt: Any, inputs: dict, invoke: Any) -> Any:
        outcome = await rt.run_graph(self.spec, inputs, invoke, entrypoint=self.entrypoint)
        if outcome.ok or isinstance(outcome.error, GraphFailed):
            # A run that ended FAILED through ``Failed(...)`` still hands back its outputs.
            return outcome.outputs
        if rt.interrupted:
            # Ctrl-C: the run is recorded CANCELLED; the program stops the way Python programs do.
            raise KeyboardInterrupt from outcome.error
        raise outcome.error

    async def start_run(self, rt: Any, inputs: dict[str, Any], *, entrypoint: str | None = None,
                        start: Any = None) -> Any:
        """Run as a top-level run in ``rt``; return the ``RunOutcome`` (never raises for a run
        that failed or was cancelled: the outcome says so). ``start``: a new run by default, or
        a ``NewRun``/``RetryRun``/``ResumeRun`` of the engine (see ``aethergraph.resume``)."""
        logged, structured = self.prepare_inputs(dict(inputs))  # a bad input: before the run
        return await rt.run_graph(
            self.spec, logged, self._invoker((), dict(structured)),
            entrypoint=entrypoint or self.entrypoint, start=start,
        )

    # -- synchronous entry --------------------------------------------------------------------

    def sync(self, *args: Any, **inputs: Any) -> Any:
        """Run as a top-level run from synchronous code (``trio.run`` underneath)."""
        return run(self, *args, **inputs)

    run = sync


class GraphFunction(_NodeFunction):
    kind = "graph_fn"

    def _normalize(self, result: Any) -> Any:
        outs = self.outputs
        if _is_failed(result):
            return result
        if outs and len(outs) == 1 and not (isinstance(result, dict) and outs[0] in result):
            return {outs[0]: result}
        return result


class ToolFunction(_NodeFunction):
    kind = "tool"

    def _normalize(self, result: Any) -> Any:
        """Upstream's normalisation: None -> {}, dict as is, tuple -> named or out0..., scalar
        -> the single declared output, else ``result``. Then every declared output must be
        there: a caller that reads one should not get a KeyError much later."""
        if _is_failed(result):
            return result
        out = self._shape(result)
        declared = self.outputs
        if declared:
            missing = [name for name in declared if name not in out]
            if missing:
                raise MissingOutputs(
                    f"tool {self.name!r} missing outputs: {', '.join(missing)} "
                    f"(declared: {', '.join(declared)}; returned: {', '.join(map(str, out)) or 'nothing'})"
                )
        return out

    def _shape(self, result: Any) -> dict:
        outs = self.outputs
        if result is None:
            return {}
        if isinstance(result, dict):
            return result
        if isinstance(result, tuple):
            if outs and len(outs) == len(result):
                return dict(zip(outs, result))
            return {f"out{i}": v for i, v in enumerate(result)}
        if outs and len(outs) == 1:
            return {outs[0]: result}
        return {"result": result}


class _Invoke:
    """What the engine calls to run a node's code once per attempt (``invoke(node)``): the
    function with the call's arguments and its context; ``finish`` normalises its result.

    An object rather than a closure: one is made per call, and a closure over the seven values
    it needs is a function, seven cells and a bound method, all tracked by the garbage
    collector while the node runs; at 10,000 live nodes (B2 ``tool-nodes``) those objects are
    what makes the full collections slow. For the same reason ``__call__`` is not a coroutine:
    for an ``async def`` it hands the engine the function's own coroutine to await (see the
    engine's ``Invoke``)."""

    __slots__ = ("fn", "args", "kwargs")

    def __init__(self, fn: _NodeFunction, args: tuple, kwargs: dict) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __call__(self, node: Any) -> Any:
        f = self.fn
        if f.wants_context:
            call_kwargs = dict(self.kwargs)
            call_kwargs["context"] = context_for(node)
        else:
            call_kwargs = self.kwargs
        if f.is_async:
            return f.fn(*self.args, **call_kwargs)
        return self._call_sync(call_kwargs)

    async def _call_sync(self, call_kwargs: dict) -> Any:
        f = self.fn
        if f.thread:
            return await trio.to_thread.run_sync(functools.partial(f.fn, *self.args, **call_kwargs))
        result = f.fn(*self.args, **call_kwargs)
        if hasattr(result, "__await__"):
            result = await result
        return result

    def finish(self, result: Any) -> Any:
        return self.fn._normalize(result)


def _is_failed(result: Any) -> bool:
    return isinstance(result, Failed)


def _importable(module: str) -> bool:
    mod = sys.modules.get(module)
    spec = getattr(mod, "__spec__", None)
    return spec is not None and spec.name == module


def _decorate(cls, fn, kwargs):
    if fn is not None and callable(fn):
        return cls(fn, **kwargs)

    def wrap(f):
        return cls(f, **kwargs)

    return wrap


def graph_fn(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    version: str = "0.1.0",
    timeout_s: float | None = None,
    retries: int | None = None,
    retry: Any = None,
) -> Any:
    """Turn ``async def f(..., *, context)`` into a node. ``timeout_s`` bounds each attempt."""
    return _decorate(GraphFunction, fn, dict(
        name=name, inputs=inputs, outputs=outputs, version=version, timeout_s=timeout_s,
        retries=retries, retry=retry,
    ))


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    outputs: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    name: str | None = None,
    version: str = "0.1.0",
    timeout_s: float | None = None,
    retries: int | None = None,
    retry: Any = None,
    thread: bool = False,
) -> Any:
    """A small reusable step, sync or async; the unit of checkpoint and retry.

    ``outputs`` (also the first positional argument, as upstream allows: ``@tool(["x"])``)
    names what it returns; a result without one of them fails the call with ``MissingOutputs``.

    ``retries=N`` retries a failing (or timed-out) call N more times with exponential backoff and
    jitter; ``retry=RetryPolicy(...)`` gives full control. A sync tool runs on the event loop
    unless ``thread=True`` moves it to a worker thread (for blocking I/O).
    """
    if isinstance(fn, (list, tuple)):  # @tool(["x", "y"]): outputs given positionally
        if outputs is not None:
            raise TypeError("tool(): outputs given twice (positionally and as outputs=)")
        fn, outputs = None, fn
    return _decorate(ToolFunction, fn, dict(
        name=name, inputs=inputs, outputs=outputs, version=version, timeout_s=timeout_s,
        retries=retries, retry=retry, thread=thread,
    ))
