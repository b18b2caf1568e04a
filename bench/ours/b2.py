"""B2, ours: fan-out of N pollers over a fake in-process job service, in ONE run.

The graph_fn submits N jobs, then starts N pollers as children of a trio nursery inside the
node; each sleeps 0.05 s and polls, five times. Variants:

- ``ag.sleep``: pollers are nursery children (plain trio tasks, not nodes) sleeping with
  ``aethergraph.sleep``, which rides the runtime's shared timer;
- ``trio.sleep``: the same with plain ``trio.sleep`` (the cost the shared timer avoids);
- ``tool-nodes``: each poller is a ``@tool`` child node (start/finish events in the run's log)
  sleeping with ``aethergraph.sleep``: what a node costs at this fan-out.

- ``map``: the tool-nodes pollers through ``context.map(poll_job, jids, max_concurrency=n)``;
- ``graphify``: a static ``@graphify`` graph of N ``poll_job`` nodes (built in the region).

No concurrency limit (map's limit is N). Warm-up: one run with N = 2 in the same runtime.
"""

import sys
import tempfile
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

import trio

import aethergraph
from aethergraph import graph_fn, graphify, open_runtime, tool
from benchkit.jobs import INTERVAL, POLLS, Jobs
from benchkit.measure import Region, args, emit

VARIANTS = ["ag.sleep", "trio.sleep", "tool-nodes", "map", "graphify"]


async def poll_job(jobs: Jobs, jid: int, nap) -> int:
    for _ in range(POLLS):
        await nap(INTERVAL)
        status, result = jobs.poll(jid)
    assert status == "done", status
    return result


@tool(name="poll_job")
async def poll_job_node(jobs, jid):
    return await poll_job(jobs, jid, aethergraph.sleep)


@graph_fn(name="fanout")
async def fanout(n, variant, *, context):
    jobs = Jobs()
    jids = [jobs.submit(i) for i in range(n)]
    results: list[int] = []
    if variant == "map":
        done = await context.map(poll_job_node, [{"jobs": jobs, "jid": j} for j in jids],
                                 max_concurrency=max(n, 1), spread=True)
        return sum(r["result"] for r in done)
    if variant == "graphify":
        @graphify(name="polls")
        def polls():
            return {str(j): poll_job_node(jobs=jobs, jid=j)["result"] for j in jids}

        return sum((await polls(context=context)).values())

    async def poller(jid: int) -> None:
        if variant == "tool-nodes":
            results.append((await poll_job_node(jobs=jobs, jid=jid))["result"])
        else:
            nap = trio.sleep if variant == "trio.sleep" else aethergraph.sleep
            results.append(await poll_job(jobs, jid, nap))

    async with trio.open_nursery() as nursery:
        for jid in jids:
            nursery.start_soon(poller, jid)
    return sum(results)


async def main(variant: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        async with open_runtime(home=home, console=False):
            assert await fanout(n=2, variant=variant) == 2  # the one warm-up
            with Region() as region:
                total = await fanout(n=n, variant=variant)
            assert total == n * (n - 1), total
    emit("B2", "ours", variant, n, region)


if __name__ == "__main__":
    a = args(VARIANTS, 10_000)
    trio.run(main, a.variant, a.n)
