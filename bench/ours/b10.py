"""B10, ours only: jobs on a dask.distributed cluster.

A real cluster on loopback, started here as processes of its own (``dask scheduler``, ``dask
worker --nworkers 2 --nthreads 1``), so the measured process is the runtime (or the bare client)
alone, not the scheduler.

- ``vs-client``: N tiny tasks (``b10_fns.tiny(i) -> i``) once through ``DaskJobs`` inside a run
  (each job its record and states in the runtime's journal, published future, result from its
  end message, ``job_*`` events) and once through a bare ``distributed.Client``: ``map`` + ``wait``; same
  process, same cluster, alternating, best of 3 rounds each. Reported: both walls and their
  ratio (target ≤ 1.25). The timed region (wall, CPU, RSS) is ours.
- ``jobs-10k``: 10,000 such jobs through ``DaskJobs`` in one run: wall, jobs/s, peak RSS of
  the runtime, and the trio tasks alive while they run (no task per job).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # bench/, for benchkit
sys.path.append(str(HERE))  # b10_fns
sys.path.append(str(HERE.parents[1]))  # the repository, for tests.agproc

import os
import shutil
import tempfile
import time

import trio

from benchkit.measure import Region, args, emit
from tests.agproc import DaskProcs

VARIANTS = ["vs-client", "jobs-10k"]
ROUNDS = 3


def start_cluster(folder: str) -> DaskProcs:
    """The cluster (one ``dask worker`` process: a nanny and two worker processes of one thread)."""
    return DaskProcs(Path(folder), [["--nworkers", "2", "--nthreads", "1"]], env={"PYTHONPATH": str(HERE)})


def _tasks() -> int:
    n, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        t = stack.pop()
        n += 1
        for nursery in t.child_nurseries:
            stack.extend(nursery.child_tasks)
    return n


def build_graph(count_tasks: bool = False):
    from aethergraph import graph_fn

    @graph_fn(name="b10")
    async def b10(n: int, *, context):
        jobs = context.jobs()
        ids = [await jobs.submit({"fn": "b10_fns:tiny", "args": [i]}) for i in range(n)]
        tasks = _tasks() if count_tasks else 0
        total = 0
        for job_id in ids:
            total += (await jobs.wait(job_id)).result
        assert total == n * (n - 1) // 2, total
        return {"tasks": tasks}

    return b10


def bare(client, n: int) -> float:
    import b10_fns
    from distributed import wait

    t0 = time.perf_counter()
    futs = client.map(b10_fns.tiny, range(n), pure=False)
    wait(futs)
    took = time.perf_counter() - t0
    assert all(f.status == "finished" for f in futs)
    del futs
    return took


async def ours(rt, graph, n: int) -> float:
    t0 = time.perf_counter()
    outcome = await graph.start_run(rt, {"n": n})
    assert outcome.ok, outcome.error
    return time.perf_counter() - t0


def main(variant: str, n: int) -> None:
    from distributed import Client

    from aethergraph import open_runtime, register_context_service
    from aethergraph.dask_jobs import DaskJobs

    results = Path(__file__).resolve().parents[1] / "results"
    results.mkdir(exist_ok=True)
    folder = tempfile.mkdtemp(dir=results)
    cluster = start_cluster(folder)
    try:
        client = Client(cluster.address, timeout=60)  # the baseline: a plain default client
        client.wait_for_workers(2, timeout=60)
        register_context_service("jobs", DaskJobs(cluster.address))
        home = os.path.join(folder, "store")
        os.environ["AETHERGRAPH_HOME"] = home

        async def run_it():
            async with open_runtime(home=home, console=False, sidecar=False, handle_sigint=False) as rt:
                if variant == "vs-client":
                    graph = build_graph()
                    await trio.to_thread.run_sync(bare, client, 50)  # the one warm-up of each
                    await ours(rt, graph, 50)
                    base, mine = [], []
                    with Region() as region:
                        for _ in range(ROUNDS):
                            mine.append(await ours(rt, graph, n))
                            base.append(await trio.to_thread.run_sync(bare, client, n))
                    return region, {"wall_ours_s": min(mine), "wall_base_s": min(base),
                                    "ratio": min(mine) / min(base), "jobs_per_s": n / min(mine),
                                    "base_jobs_per_s": n / min(base)}
                graph = build_graph(count_tasks=True)
                await ours(rt, graph, 50)
                with Region() as region:
                    t0 = time.perf_counter()
                    outcome = await graph.start_run(rt, {"n": n})
                    wall = time.perf_counter() - t0
                assert outcome.ok, outcome.error
                return region, {"jobs_per_s": n / wall, "wall_ours_s": wall,
                                "tasks_with_jobs": outcome.outputs["tasks"]}

        region, extra = trio.run(run_it)
        client.close()
    finally:
        cluster.close(timeout=15)
        shutil.rmtree(folder, ignore_errors=True)
    emit("B10", "ours", variant, n, region, workers="2 processes x 1 thread, loopback", **extra)


if __name__ == "__main__":
    a = args(VARIANTS, 1000)
    main(a.variant, a.n)
