"""B3, ours: N sequential ``memory().record`` calls in one node, then "the 50 most recent of
kind k3", newest first.

Store: the run's append-only log file (fsync'd in groups, ``durability="batch"``) plus the SQLite
index fed from it. ``record`` returns once the writer accepted the event, so the write timer
covers the loop only. A query first waits for everything recorded so far to be on disk and
indexed, so the FIRST query after the loop also measures that drain; it is reported as such
(``query1_s``), and ``loop + query1`` is the time until all N events are durable in the log AND
queryable. A second, identical query (``query2_s``) is the query on its own.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

import trio

from aethergraph import graph_fn, open_runtime
from b5 import record_kinds  # (this folder is first on the path: run as a script)
from benchkit.measure import Region, args, emit

VARIANTS = ["batch"]


def expected(n: int) -> list[int]:
    return [i for i in range(n - 1, -1, -1) if i % 10 == 3][:50]


@graph_fn(name="events")
async def write_then_query(n, *, context):
    mem = context.memory()
    with Region() as write:
        await record_kinds(mem, n)
    timings = []
    answers = []
    for _ in range(2):
        t0 = time.perf_counter()
        found = await mem.query(kinds=["k3"], limit=50, scope="run")
        timings.append(time.perf_counter() - t0)
        answers.append([e.data["i"] for e in found])
    return write, timings, answers


async def main(variant: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        async with open_runtime(home=home, console=False, durability=variant):
            await write_then_query(n=10)  # the one warm-up (its own run)
            write, (q1, q2), (a1, a2) = await write_then_query(n=n)
    correct = a1 == expected(n) and a2 == expected(n)
    emit("B3", "ours", variant, n, write, events_per_s=n / write.wall_s,
         durable_events_per_s=n / (write.wall_s + q1), query1_s=q1, query2_s=q2,
         correct=correct, backend="log file + SQLite index (batch)")


if __name__ == "__main__":
    a = args(VARIANTS, 100_000)
    trio.run(main, a.variant, a.n)
