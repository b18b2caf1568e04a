"""``ag graph TARGET``: the DAG of a ``@graphify`` graph (nodes, ids, edges), before it runs.

Builds the graph (the body runs with handles; no tool runs, no store is opened) and prints one
line per node in an order that can run: its id, what it calls, what it waits for.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from aethergraph.runtime.exits import EXIT_OK

from ..static_graph import GraphBuildError, GraphifyFunction
from ..targets import TargetError, load_target
from .main import CliError


def cmd_graph(args: Any) -> int:
    try:
        fn = load_target(args.target)
    except TargetError as exc:
        raise CliError(str(exc)) from None
    if not isinstance(fn, GraphifyFunction):
        raise CliError(f"{fn.name} is a {fn.kind}: its calls are decided while it runs, so it has no "
                       "shape before; only @graphify graphs do (`ag show RUN` shows what a run did)")
    try:
        graph = fn.build()
    except (GraphBuildError, ValueError, TypeError) as exc:
        raise CliError(f"graph {fn.name} cannot be built: {exc}") from None
    if args.json:
        print(msgspec.json.encode(graph.to_dict()).decode())
    else:
        sys.stdout.write(graph.describe() + "\n")
    return EXIT_OK
