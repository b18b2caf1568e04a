"""B9, ours only: real process jobs.

- ``vs-run-process``: N trivial jobs (``true``) with at most 8 at a time, once through
  ``ProcessJobs(max_parallel=8)`` inside a run (each job started by the runtime's job host, its folder,
  output files, journal lines and events) and once as a plain ``trio.run_process`` loop under a
  ``CapacityLimiter(8)``, in the same process, alternating, best of 3 rounds each. Reported:
  both throughputs, their ratio (target ≥ 0.8) and the overhead per job in ms. The timed region
  (wall, CPU, RSS) is ours.
- ``queued-10k``: 10,000 jobs submitted while one job holds the only slot; reported: submit
  rate, how many trio tasks exist with 10,000 jobs queued (none per job), RSS; then all cancelled.
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

import contextlib
import os
import shutil
import tempfile
import time

import trio

from benchkit.measure import Region, args, emit

VARIANTS = ["vs-run-process", "queued-10k"]
PARALLEL = 8
ROUNDS = 3
TRUE = shutil.which("true") or "/bin/true"


@contextlib.contextmanager
def _store():
    """The runtime's store: deleted at the end, unless the harness keeps it (``BENCH_KEEP_STORE``,
    set in a fresh folder of its own that it deletes once B9 is over: see benchkit.execute)."""
    if os.environ.get("BENCH_KEEP_STORE"):
        yield tempfile.mkdtemp(prefix="store-", dir=os.getcwd())
        return
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "results") as home:
        yield home


def _tasks() -> list[str]:
    """Every task alive in this trio run (walks the task tree from the root)."""
    names = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        t = stack.pop()
        names.append(t.name)
        for nursery in t.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


async def plain(n: int) -> float:
    limit = trio.CapacityLimiter(PARALLEL)

    async def one() -> None:
        async with limit:
            await trio.run_process([TRUE])

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return time.perf_counter() - t0


async def ours(rt, graph, n: int) -> float:
    t0 = time.perf_counter()
    outcome = await graph.start_run(rt, {"n": n})
    assert outcome.ok and outcome.outputs == n, outcome
    return time.perf_counter() - t0


def build_graph():
    from aethergraph import graph_fn

    @graph_fn(name="b9")
    async def b9(n: int, *, context):
        jobs = context.jobs()
        ids = [await jobs.submit([TRUE]) for _ in range(n)]
        ok = 0
        for job_id in ids:
            ok += (await jobs.wait(job_id)).exit_code == 0
        return ok

    return b9


def vs_run_process(n: int) -> None:
    from aethergraph import open_runtime, register_context_service
    from aethergraph.jobs import ProcessJobs

    register_context_service("jobs", ProcessJobs(max_parallel=PARALLEL))
    graph = build_graph()
    with _store() as home:
        os.environ["AETHERGRAPH_HOME"] = home

        async def main():
            async with open_runtime(home=home, console=False, sidecar=False, handle_sigint=False) as rt:
                await plain(50)  # the one warm-up of each: the job host, imports, first files
                await ours(rt, graph, 50)
                base, mine = [], []
                with Region() as region:
                    for _ in range(ROUNDS):
                        mine.append(await ours(rt, graph, n))
                        base.append(await plain(n))
                return region, min(base), min(mine)

        region, base, mine = trio.run(main)
    emit("B9", "ours", "vs-run-process", n, region,
         jobs_per_s=n / mine, base_jobs_per_s=n / base, ratio=base / mine,
         overhead_ms=(mine - base) / n * 1000, wall_ours_s=mine, wall_base_s=base, parallel=PARALLEL)


def queued(n: int) -> None:
    from aethergraph import graph_fn, open_runtime, register_context_service
    from aethergraph.jobs import JobState, ProcessJobs

    register_context_service("jobs", ProcessJobs(max_parallel=1))

    @graph_fn(name="b9q")
    async def b9q(n: int, *, context):
        jobs = context.jobs()
        holder = await jobs.submit(["sleep", "60"])
        await trio.sleep(0.05)  # the holder is running
        before = len(_tasks())
        t0 = time.perf_counter()
        ids = [await jobs.submit([TRUE]) for _ in range(n)]
        submit_s = time.perf_counter() - t0
        states = {(await jobs.status(i)).state for i in ids[-100:]}
        tasks = _tasks()
        for job_id in [*ids, holder]:
            await jobs.cancel(job_id, grace_s=0)
        return {"submit_s": submit_s, "tasks_before": before, "tasks_queued": len(tasks), "names": tasks,
                "queued": states == {JobState.QUEUED}}

    with _store() as home:
        os.environ["AETHERGRAPH_HOME"] = home

        async def main():
            async with open_runtime(home=home, console=False, sidecar=False, handle_sigint=False) as rt:
                await b9q.start_run(rt, {"n": 10})  # warm-up
                with Region() as region:
                    outcome = await b9q.start_run(rt, {"n": n})
                assert outcome.ok, outcome.error
                return region, outcome.outputs

        region, out = trio.run(main)
    emit("B9", "ours", "queued-10k", n, region, submits_per_s=n / out["submit_s"],
         tasks_with_queue=out["tasks_queued"], tasks_before=out["tasks_before"],
         all_queued=out["queued"], task_names=sorted(out["names"]))


if __name__ == "__main__":
    a = args(VARIANTS, 1000)
    (vs_run_process if a.variant == "vs-run-process" else queued)(a.n)
