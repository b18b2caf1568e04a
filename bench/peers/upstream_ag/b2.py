"""B2, upstream aethergraph 0.1.0a15: fan-out of N pollers in ONE graph_fn run.

Pollers are asyncio tasks (``asyncio.gather`` inside the graph_fn; upstream's graph_fn is plain
Python around a synthetic root context, so tasks are what a user writes); each does 5 ×
``asyncio.sleep(0.05)`` then polls. No concurrency limit. Warm-up: one run with N = 2.
"""

import asyncio
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # bench/, for benchkit

import _upstream  # noqa: F401  (before aethergraph: environment and workspace)
from aethergraph import NodeContext, graph_fn

from benchkit.jobs import Jobs, poll_job
from benchkit.measure import Region, args, emit

VARIANTS = ["gather"]


@graph_fn(name="fanout", inputs=["n"], outputs=["total"])
async def fanout(n: int, context: NodeContext):
    jobs = Jobs()
    jids = [jobs.submit(i) for i in range(n)]
    results = await asyncio.gather(*(poll_job(jobs, jid) for jid in jids))
    return sum(results)


async def main(variant: str, n: int) -> None:
    assert (await fanout(n=2))["total"] == 2  # the one warm-up
    with Region() as region:
        total = (await fanout(n=n))["total"]
    assert total == n * (n - 1), total
    emit("B2", "upstream", variant, n, region)


if __name__ == "__main__":
    a = args(VARIANTS, 10_000)
    asyncio.run(main(a.variant, a.n))
