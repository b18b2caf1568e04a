"""B3, LangGraph 1.2.24: N sequential ``store.aput`` calls in one node, then "the 50 most recent
of kind k3", newest first.

Variants: ``memory`` (InMemoryStore, not durable) and ``sqlite`` (AsyncSqliteStore on a file).
Each event is one item in namespace ``("events",)`` keyed by a zero-padded sequence number (the
Store is a document store with no log order of its own), value ``{"kind": ..., "data": {"i":
i}}``. The Store has no "newest first" search (InMemoryStore returns insertion order; the SQLite
store orders by a timestamp many items share), so the query is ``asearch(("events",),
filter={"kind": "k3"}, limit=N)`` and the newest 50 are picked by key on the client side - the
time of that sort is included.
"""

import asyncio
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TypedDict

sys.path.append(str(Path(__file__).resolve().parents[2]))  # bench/, for benchkit

from _lg import open_persistence  # noqa: I001  (sets the environment first)
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from benchkit.measure import Region, args, emit

VARIANTS = ["memory", "sqlite"]
NS = ("events",)


class State(TypedDict):
    n: int


def expected(n: int) -> list[int]:
    return [i for i in range(n - 1, -1, -1) if i % 10 == 3][:50]


def build(store, out: dict):
    async def write_then_query(state: State, runtime: Runtime) -> dict:
        n, st = state["n"], runtime.store
        with Region() as write:
            for i in range(n):
                await st.aput(NS, f"{i:012d}", {"kind": f"k{i % 10}", "data": {"i": i}},
                              index=False)
        timings, answers = [], []
        for _ in range(2):
            t0 = time.perf_counter()
            items = await st.asearch(NS, filter={"kind": "k3"}, limit=n)
            newest = sorted(items, key=lambda it: it.key, reverse=True)[:50]
            timings.append(time.perf_counter() - t0)
            answers.append([it.value["data"]["i"] for it in newest])
        out.update(write=write, timings=timings, answers=answers)
        return {}

    g = StateGraph(State)
    g.add_node("write", write_then_query)
    g.add_edge(START, "write")
    g.add_edge("write", END)
    return g.compile(store=store)


async def main(variant: str, n: int) -> None:
    out: dict = {}
    async with AsyncExitStack() as stack:
        _, store = await open_persistence(stack, "none" if variant == "memory" else "sqlite",
                                          with_store=True)
        app = build(store, out)
        await app.ainvoke({"n": 10})  # the one warm-up (same keys, overwritten by the real run)
        await app.ainvoke({"n": n})
    write, (q1, q2), (a1, a2) = out["write"], out["timings"], out["answers"]
    correct = a1 == expected(n) and a2 == expected(n)
    emit("B3", "langgraph", variant, n, write, events_per_s=n / write.wall_s,
         durable_events_per_s=n / write.wall_s if variant == "sqlite" else None,
         query1_s=q1, query2_s=q2, correct=correct,
         backend="InMemoryStore (not durable)" if variant == "memory" else "AsyncSqliteStore (file)")


if __name__ == "__main__":
    a = args(VARIANTS, 100_000)
    asyncio.run(main(a.variant, a.n))
