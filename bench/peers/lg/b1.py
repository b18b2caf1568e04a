"""B1, LangGraph 1.2.24: per-node overhead of a chain of 2,000 ``step`` nodes.

``top``: a one-node graph, ``await app.ainvoke({"x": x})`` per call (a fresh ``thread_id`` per
call when a checkpointer is used). ``in-run``: ONE ``ainvoke`` of a node that loops back to
itself until x == n (``recursion_limit = n + 10``).

Variant ``<shape>/<checkpointer>/<record>``: checkpointer ``none`` | ``memory`` (InMemorySaver) |
``sqlite`` (AsyncSqliteSaver, a file); record ``-`` (none) | ``state`` (one event appended to an
``events`` list channel with an ``operator.add`` reducer) | ``store`` (LangGraph's ``runtime.store.aput``;
InMemoryStore, or AsyncSqliteStore with the sqlite checkpointer).
"""

import asyncio
import operator
import sys
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, TypedDict

sys.path.append(str(Path(__file__).resolve().parents[2]))  # bench/, for benchkit

from _lg import CHECKPOINTERS, open_persistence  # noqa: I001  (sets the environment first)
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from benchkit.measure import Region, args, emit

RECORDS = ("-", "state", "store")
VARIANTS = [f"{shape}/{cp}/{rec}" for shape in ("top", "in-run") for cp in CHECKPOINTERS
            for rec in RECORDS]


class State(TypedDict, total=False):
    x: int
    events: Annotated[list, operator.add]


def build(shape: str, record: str, n: int, checkpointer, store):
    async def step(state: State, runtime: Runtime) -> dict:
        x = state["x"]
        if record == "state":
            return {"x": x + 1, "events": [{"kind": "step", "data": {"x": x}}]}
        if record == "store":
            await runtime.store.aput(("events",), uuid.uuid4().hex, {"kind": "step", "data": {"x": x}})
        return {"x": x + 1}

    g = StateGraph(State)
    g.add_node("step", step)
    g.add_edge(START, "step")
    if shape == "top":
        g.add_edge("step", END)
    else:
        g.add_conditional_edges("step", lambda s: "step" if s["x"] < n else END, ["step", END])
    return g.compile(checkpointer=checkpointer, store=store)


def config(checkpointer, recursion_limit: int | None = None) -> dict:
    cfg: dict = {}
    if checkpointer is not None:
        cfg["configurable"] = {"thread_id": uuid.uuid4().hex}
    if recursion_limit is not None:
        cfg["recursion_limit"] = recursion_limit
    return cfg


async def run(app, shape: str, n: int, checkpointer) -> int:
    if shape == "top":
        x = 0
        for _ in range(n):
            x = (await app.ainvoke({"x": x}, config(checkpointer)))["x"]
        return x
    return (await app.ainvoke({"x": 0}, config(checkpointer, n + 10)))["x"]


async def main(variant: str, n: int) -> None:
    shape, cp, record = variant.split("/")
    async with AsyncExitStack() as stack:
        checkpointer, store = await open_persistence(stack, cp, with_store=record == "store")
        warm = build(shape, record, 2, checkpointer, store)
        app = build(shape, record, n, checkpointer, store)
        assert await run(warm, shape, 2, checkpointer) == 2  # the one warm-up
        with Region() as region:
            final = await run(app, shape, n, checkpointer)
        assert final == n, final
    backend = {"none": "-", "memory": "in-memory", "sqlite": "SQLite file"}[cp]
    emit("B1", "langgraph", variant, n, region, us_per_node=region.wall_s / n * 1e6,
         cpu_us_per_node=region.cpu_s / n * 1e6, backend=backend)


if __name__ == "__main__":
    a = args(VARIANTS, 2000)
    asyncio.run(main(a.variant, a.n))
