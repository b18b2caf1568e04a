"""``@graphify``: a static graph, built from tool calls before anything runs.

The body is plain Python that calls tools. While it runs (at build time) a tool call does not
run the tool: it adds a node and returns a *handle*. Handles (or their outputs: ``h.y``,
``h["y"]``), the graph's inputs and plain values are a node's arguments; a node depends on
every node whose handle its arguments contain, and on the ones named by ``_after=``. The body
returns the graph's outputs (a dict of handles/values, or one handle).

Identity: a node's ``_id`` (default: the tool's name, then ``name_2``, ``name_3``... in the
order the body declares them). It is the node's journal key (``<graph key>/@<id>``) and path
(``<graph path>/<id>``), whatever its arguments: resume replays a finished node by id, so an
id stays the same across code edits and names the same step.

Running: like any graph (``aethergraph.run(g, **inputs)``, ``await g(**inputs)`` in a graph,
``ag run file.py:g``, the dashboard), up to ``max_concurrency`` nodes at once. Calling ``g(...)``
builds a ``BoundGraph`` and runs nothing until it is awaited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from aethergraph.runtime import events as ev
from aethergraph.runtime.dag import ON_ERROR, run_dag, topological_order
from aethergraph.runtime.engine import Failed
from aethergraph.runtime.errors import NodeCancelled

from .decorators import GraphFunction, _NodeFunction, building

_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
RESERVED = ("max_concurrency", "on_error", "context")


class GraphBuildError(ValueError):
    """A ``@graphify`` body that does not describe a graph (bad id, unknown output, cycle)."""


# -- handles --------------------------------------------------------------------------------


@attrs.frozen
class InputRef:
    """A graph input, as the body sees it at build time."""

    name: str

    def __repr__(self) -> str:
        return f"<input {self.name}>"


@attrs.frozen
class OutputRef:
    """One output of a node: ``handle.y``."""

    node: str
    key: str

    def __repr__(self) -> str:
        return f"<{self.node}.{self.key}>"


@attrs.frozen(eq=False)
class NodeRef:
    """What a tool call returns inside a ``@graphify`` body. As an argument it stands for the
    node's single declared output when it declares one, else for its whole result dict."""

    id: str
    outputs: tuple[str, ...] | None

    def __getattr__(self, key: str) -> OutputRef:
        if key.startswith("__"):
            raise AttributeError(key)
        return self[key]

    def __getitem__(self, key: str) -> OutputRef:
        if self.outputs is not None and key not in self.outputs:
            raise GraphBuildError(
                f"node {self.id!r} has no output {key!r} (declared: {', '.join(self.outputs) or 'none'})")
        return OutputRef(self.id, key)

    def __iter__(self):
        raise GraphBuildError(
            f"node {self.id!r} is a handle, not a value: it has no items to iterate at build time")

    def __bool__(self) -> bool:
        raise GraphBuildError(
            f"node {self.id!r} is a handle, not a value: a @graphify body cannot branch on it "
            "(use @graph_fn for control flow that depends on results)")

    def __repr__(self) -> str:
        return f"<node {self.id}>"


# -- the shape ------------------------------------------------------------------------------


@attrs.define(eq=False)
class StaticNode:
    id: str
    fn: _NodeFunction
    args: tuple
    kwargs: dict[str, Any]
    deps: list[str]  # data dependencies first, then _after, each once, in declaration order
    after: list[str]
    data: frozenset[str] = frozenset()


@attrs.define(eq=False)
class StaticGraph:
    """The DAG a ``@graphify`` body declares: nodes in declaration order."""

    name: str
    inputs: list[str]
    nodes: dict[str, StaticNode]
    returns: Any = None

    @property
    def deps(self) -> dict[str, list[str]]:
        return {i: n.deps for i, n in self.nodes.items()}

    @property
    def edges(self) -> list[tuple[str, str, str]]:
        """(from, to, "data" | "after")."""
        out = []
        for n in self.nodes.values():
            for d in n.deps:
                out.append((d, n.id, "data" if d in n.data else "after"))
        return out

    def describe(self) -> str:
        """What ``ag graph`` prints: one line per node (id, what it calls, what it waits on), in
        an order that runs."""
        order = topological_order(self.deps)
        width = max((len(i) for i in order), default=0)
        lines = [f"graph {self.name}: {len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''}, "
                 f"{len(self.edges)} edge{'s' if len(self.edges) != 1 else ''}; "
                 f"inputs: {', '.join(self.inputs) or 'none'}"]
        kinds = {(a, b): k for a, b, k in self.edges}
        for i in order:
            n = self.nodes[i]
            waits = ", ".join(d if kinds[(d, i)] == "data" else f"{d} (after)" for d in n.deps)
            uses = sorted({r.name for r in _inputs_in((n.args, n.kwargs))})
            extra = f"  <- {waits}" if waits else ""
            if uses:
                extra += f"  [inputs: {', '.join(uses)}]"
            lines.append(f"  {i.ljust(width)}  {n.fn.kind} {n.fn.name}{extra}")
        return "\n".join(lines)

    def planned(self) -> list[Any]:
        """The shape as the log records it (``GraphPlanned``)."""
        return [ev.DagNode(id=n.id, name=n.fn.name, kind=n.fn.kind, deps=list(n.deps),
                           after=[a for a in n.deps if a not in n.data]) for n in self.nodes.values()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.name,
            "inputs": list(self.inputs),
            "nodes": [{"id": n.id, "kind": n.fn.kind, "name": n.fn.name, "deps": list(n.deps),
                       "after": [a for a in n.deps if a not in n.data]} for n in self.nodes.values()],
            "edges": [{"from": a, "to": b, "kind": k} for a, b, k in self.edges],
        }


def _walk(value: Any):
    if isinstance(value, (InputRef, OutputRef, NodeRef)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v)


def _refs_in(value: Any) -> list[str]:
    """The node ids ``value`` holds handles of, each once, in the order they appear."""
    return list(dict.fromkeys(r.node if isinstance(r, OutputRef) else r.id for r in _walk(value)
                              if not isinstance(r, InputRef)))


def _inputs_in(value: Any) -> list[InputRef]:
    return [r for r in _walk(value) if isinstance(r, InputRef)]


class Builder:
    """Collects the nodes while a ``@graphify`` body runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: dict[str, StaticNode] = {}
        self._counts: dict[str, int] = {}
        self._defaulted: set[str] = set()

    def add(self, fn: _NodeFunction, args: tuple, kwargs: dict[str, Any]) -> NodeRef:
        kwargs = dict(kwargs)
        node_id = kwargs.pop("_id", None)
        after = kwargs.pop("_after", None)
        if "context" in kwargs:
            raise GraphBuildError(f"{fn.name}(): a node of a static graph gets no context= (its tool "
                                  "gets its own when it asks for one)")
        if node_id is None:
            node_id = self._default_id(fn.name)
        else:
            node_id = self._check_id(node_id)
        after_ids = []
        for a in (after if isinstance(after, (list, tuple)) else [] if after is None else [after]):
            ref = a.id if isinstance(a, NodeRef) else a.node if isinstance(a, OutputRef) else a
            if not isinstance(ref, str) or ref not in self.nodes:
                raise GraphBuildError(f"node {node_id!r}: _after= must name earlier nodes (handles or "
                                      f"ids), got {a!r}")
            after_ids.append(ref)
        data = _refs_in((args, kwargs))
        for r in data:
            if r not in self.nodes:
                raise GraphBuildError(f"node {node_id!r} uses a handle of another graph's node {r!r}")
        # Data first (in the order the arguments hold them), then _after, each once.
        data_set = set(data)
        deps = data + [i for i in dict.fromkeys(after_ids) if i not in data_set]
        self.nodes[node_id] = StaticNode(node_id, fn, tuple(args), kwargs, deps, after_ids, frozenset(data))
        outs = getattr(fn, "outputs", None)
        return NodeRef(node_id, tuple(outs) if outs is not None else None)

    def _default_id(self, name: str) -> str:
        n = self._counts.get(name, 0)
        while True:
            n += 1
            candidate = name if n == 1 else f"{name}_{n}"
            if candidate not in self.nodes:
                break
        self._counts[name] = n
        self._defaulted.add(candidate)
        return candidate

    def _check_id(self, node_id: Any) -> str:
        if not isinstance(node_id, str) or not node_id or not set(node_id) <= _ID_OK:
            raise GraphBuildError(
                f"_id={node_id!r}: a node id is letters, digits, '_', '-', '.' (no '/': ids are "
                "path segments)")
        if node_id in self.nodes:
            how = " (the default id of an earlier call: give that one an _id too)" if node_id in self._defaulted else ""
            raise GraphBuildError(f"_id={node_id!r} is used twice in graph {self.name!r}{how}")
        return node_id


# -- running --------------------------------------------------------------------------------


class _ReturnedFailed(Exception):
    """A node returned ``Failed(...)``: it ended FAILED on purpose; its dependants cannot run."""

    def __init__(self, failed: Any) -> None:
        super().__init__(failed.message)
        self.failed = failed


def _resolve(value: Any, results: dict[str, Any], inputs: dict[str, Any], graph: StaticGraph) -> Any:
    if isinstance(value, InputRef):
        return inputs[value.name]
    if isinstance(value, OutputRef):
        out = results[value.node]
        if not isinstance(out, dict) or value.key not in out:
            shown = ", ".join(map(str, out)) if isinstance(out, dict) else type(out).__name__
            raise KeyError(f"node {value.node!r} has no output {value.key!r} (it returned: {shown or 'nothing'})")
        return out[value.key]
    if isinstance(value, NodeRef):
        out = results[value.id]
        if value.outputs is not None and len(value.outputs) == 1 and isinstance(out, dict):
            return out.get(value.outputs[0])
        return out
    if isinstance(value, dict):
        return {k: _resolve(v, results, inputs, graph) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results, inputs, graph) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, results, inputs, graph) for v in value)
    return value


class GraphifyFunction(GraphFunction):
    """A ``@graphify`` graph: builds its ``StaticGraph`` once; runs it as a graph node."""

    def __init__(self, fn: Callable[..., Any], *, max_concurrency: int | None = None,
                 on_error: str = "stop", **kwargs: Any) -> None:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(f"@graphify body {fn.__name__} must be a plain def: it builds the graph, "
                            "its tools do the work")
        super().__init__(fn, **kwargs)
        for name in RESERVED:
            if name in self.signature.parameters:
                raise TypeError(f"@graphify {self.name}: {name!r} cannot be a graph input (it is an option "
                                "of the run)")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        self.max_concurrency = max_concurrency
        self.on_error = on_error
        self.wants_context = False
        self._graph: StaticGraph | None = None

    def build(self) -> StaticGraph:
        """The DAG (built on first use; the body runs once, with handles for the inputs)."""
        if self._graph is None:
            names = [p.name for p in self.signature.parameters.values()
                     if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            builder = Builder(self.name)
            token = building.set(builder)
            try:
                returns = self.fn(**{n: InputRef(n) for n in names})
            finally:
                building.reset(token)
            if inspect.isawaitable(returns):
                raise GraphBuildError(f"@graphify {self.name}: the body returned an awaitable; it must be "
                                      "a plain def that calls tools")
            graph = StaticGraph(self.name, names, builder.nodes, returns)
            topological_order(graph.deps)  # a cycle cannot be built (handles only point back)
            self._check_outputs(returns)
            self._graph = graph
        return self._graph

    def _check_outputs(self, returns: Any) -> None:
        outs = self.outputs
        if not outs or returns is None:
            return
        if isinstance(returns, dict):
            missing = [o for o in outs if o not in returns]
            if missing:
                raise GraphBuildError(f"@graphify {self.name} declares outputs it does not return: "
                                      f"{', '.join(missing)}")
        elif len(outs) != 1:
            raise GraphBuildError(f"@graphify {self.name} declares {len(outs)} outputs; return a dict of them")

    def io(self) -> dict[str, list[str]]:
        """The graph's inputs and declared outputs (upstream's ``.io()``)."""
        return {"inputs": list(self.build().inputs), "outputs": list(self.outputs or [])}

    def options(self, *, max_concurrency: int | None = None, on_error: str | None = None) -> GraphifyFunction:
        """The same graph with other run options (same name, same entrypoint)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        if max_concurrency is not None:
            clone.max_concurrency = max_concurrency
        if on_error is not None:
            clone.on_error = on_error
        return clone

    def __call__(self, *args: Any, context: Any = None, max_concurrency: int | None = None,
                 on_error: str | None = None, **kwargs: Any) -> Any:
        if building.get() is not None:
            return super().__call__(*args, **kwargs)  # a subgraph: one node of the outer graph
        fn = self if max_concurrency is None and on_error is None else self.options(
            max_concurrency=max_concurrency, on_error=on_error)
        return BoundGraph(fn, args, kwargs, context)

    def _invoker(self, args: tuple, kwargs: dict):
        graph = self.build()
        given = self._inputs(args, kwargs)
        params = self.signature.parameters
        inputs = {n: given[n] if n in given else params[n].default for n in graph.inputs
                  if n in given or params[n].default is not inspect.Parameter.empty}
        missing = [n for n in graph.inputs if n not in inputs]
        if missing:
            raise TypeError(f"graph {self.name} is missing inputs: {', '.join(missing)}")
        max_concurrency, on_error = self.max_concurrency, self.on_error
        planned = graph.planned()
        normalize = self._normalize

        async def invoke(node):
            rt, run = node.runtime, node.run
            results: dict[str, Any] = {}
            node.emit(ev.GraphPlanned, nodes=planned, max_concurrency=max_concurrency, on_error=on_error)

            async def run_node(node_id: str) -> None:
                sn = graph.nodes[node_id]
                call_args = _resolve(sn.args, results, inputs, graph)
                call_kwargs = _resolve(sn.kwargs, results, inputs, graph)
                fn = sn.fn
                logged = fn._inputs(call_args, call_kwargs)
                if fn.typed is not None:
                    logged, structured = fn.typed.prepare(logged)
                    invoke_child = fn._invoker((), structured)
                else:
                    invoke_child = fn._invoker(call_args, call_kwargs)
                out = await rt.execute_node(run, node, fn.spec, logged, invoke_child, node_id=node_id)
                if isinstance(out, Failed):
                    raise _ReturnedFailed(out)
                results[node_id] = out

            def cancel_running(ids: list[str], reason: str) -> None:
                for i in ids:
                    handle = run.nodes.get(f"{node.path}/{i}")
                    if handle is not None:
                        handle.cancel(reason, by="graph")

            outcome = await run_dag(
                graph.deps, run_node, max_concurrency=max_concurrency, on_error=on_error,
                is_cancellation=lambda exc: isinstance(exc, NodeCancelled),
                cancel_running=cancel_running,
            )
            if not outcome.ok:
                err = outcome.errors[outcome.first_failed]
                if isinstance(err, _ReturnedFailed):
                    return err.failed
                raise err
            if graph.returns is None:
                return {}
            return normalize(_resolve(graph.returns, results, inputs, graph))

        return invoke


@attrs.define(eq=False)
class BoundGraph:
    """``g(**inputs)``: the graph with its inputs, not running. ``await`` it to run it (a child
    node inside a graph, else a run of its own); ``.graph`` is its shape."""

    fn: GraphifyFunction
    args: tuple
    kwargs: dict[str, Any]
    context: Any = None

    @property
    def graph(self) -> StaticGraph:
        return self.fn.build()

    @property
    def nodes(self) -> dict[str, StaticNode]:
        return self.graph.nodes

    @property
    def edges(self) -> list[tuple[str, str, str]]:
        return self.graph.edges

    def describe(self) -> str:
        return self.graph.describe()

    def __await__(self):
        return self.fn._call(self.args, self.kwargs, self.context).__await__()


def graphify(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    version: str = "0.1.0",
    max_concurrency: int | None = None,
    on_error: str = "stop",
    timeout_s: float | None = None,
) -> Any:
    """A static graph from a plain ``def`` whose body calls tools (see the module docstring).

    ``max_concurrency``: at most this many nodes at once (default: no limit); also per run:
    ``g(**inputs, max_concurrency=N)``, ``aethergraph.run(g, max_concurrency=N)``, ``ag run
    --max-concurrency N``. ``on_error``: ``"stop"`` (default) cancels the rest on the first
    failure; ``"continue"`` lets independent branches finish (dependants of a failed node are
    skipped); the graph fails either way.
    """

    def wrap(f: Callable[..., Any]) -> GraphifyFunction:
        if inputs is not None:
            params = inspect.signature(f).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            unknown = [i for i in inputs if i not in params and not takes_any]
            if unknown:
                raise TypeError(f"@graphify {f.__name__}: inputs {', '.join(unknown)} are not "
                                "parameters of the body")
        return GraphifyFunction(f, name=name, inputs=inputs, outputs=outputs, version=version,
                                timeout_s=timeout_s, retries=None, retry=None,
                                max_concurrency=max_concurrency, on_error=on_error)

    if fn is not None and callable(fn):
        return wrap(fn)
    return wrap


__all__ = ["BoundGraph", "GraphBuildError", "GraphifyFunction", "NodeRef", "StaticGraph", "graphify"]
