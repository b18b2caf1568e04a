"""B3, upstream aethergraph 0.1.0a15: N sequential ``memory().append_event`` calls in one
graph_fn, then "the 50 most recent of kind k3", newest first.

Store: upstream's default memory persistence, its SQLite event log in the workspace (durable
file; each append also goes to the hot log and the metering/trace hooks). Query:
``query_events(kinds=["k3"], limit=50)`` (its default reads the hot log, newest first). At
~30 ms per append on this machine, N = 100,000 would take close to an hour per repetition, so
run.py measures N = 10,000 (3 repetitions) only.
"""

import asyncio
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # bench/, for benchkit

import _upstream  # noqa: F401  (before aethergraph: environment and workspace)
from aethergraph import NodeContext, graph_fn

from benchkit.measure import Region, args, emit

VARIANTS = ["default"]
RESULT = {}


def expected(n: int) -> list[int]:
    return [i for i in range(n - 1, -1, -1) if i % 10 == 3][:50]


@graph_fn(name="events", inputs=["n"], outputs=["ok"])
async def write_then_query(n: int, context: NodeContext):
    mem = context.memory()
    with Region() as write:
        for i in range(n):
            await mem.append_event(kind=f"k{i % 10}", data={"i": i})
    timings, answers = [], []
    for _ in range(2):
        t0 = time.perf_counter()
        found = await mem.query_events(kinds=["k3"], limit=50)
        timings.append(time.perf_counter() - t0)
        answers.append([e.data["i"] for e in found])
    RESULT.update(write=write, timings=timings, answers=answers)
    return True


async def main(variant: str, n: int) -> None:
    await write_then_query(n=10)  # the one warm-up (its own run)
    await write_then_query(n=n)
    write, (q1, q2), (a1, a2) = RESULT["write"], RESULT["timings"], RESULT["answers"]
    correct = a1 == expected(n) and a2 == expected(n)
    emit("B3", "upstream", variant, n, write, events_per_s=n / write.wall_s,
         durable_events_per_s=n / write.wall_s, query1_s=q1, query2_s=q2, correct=correct,
         backend="SQLite event log (workspace) + hot log")


if __name__ == "__main__":
    a = args(VARIANTS, 10_000)
    asyncio.run(main(a.variant, a.n))
