"""DaskJobs on a real dask.distributed cluster the module starts: a ``dask scheduler`` and two
``dask worker`` processes on loopback (each a nanny and one worker process of two threads)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

distributed = pytest.importorskip("distributed")

from aethergraph import graph_fn, register_context_service  # noqa: E402
from aethergraph.dask_jobs import DaskJobs  # noqa: E402
from aethergraph.jobs import JobState  # noqa: E402
from aethergraph.runtime import events as ev  # noqa: E402
from aethergraph.runtime.jobs.store import JobStore  # noqa: E402

from .conftest import ROOT, ag, in_background, rt_open, run_events  # noqa: E402
from .agproc import DaskProcs, wait_until  # noqa: E402
from .test_jobs import (  # noqa: E402
    assert_job_cancel_logged_first, forker_past_its_timeout, forker_waiting, refusals, script,
    submit_from_two_processes,
)

PY = sys.executable


class Cluster(DaskProcs):
    """Two workers of one process and two threads each, and a client to look at the cluster."""

    def __init__(self, folder: Path) -> None:
        # A worker's death is the job's end (LOST), not a silent second run elsewhere.
        super().__init__(folder, [["--nworkers", "1", "--nthreads", "2", "--name", f"w{i}"] for i in range(2)],
                         env={"PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})
        self.client = distributed.Client(self.address, set_as_default=False, timeout=60)
        self.client.wait_for_workers(2, timeout=60)

    def worker_pid(self, address: str) -> int:
        return self.client.run(os.getpid, workers=[address])[address]

    def close(self) -> None:
        self.client.close()
        super().close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def jobs(cluster):
    svc = DaskJobs(cluster.address)
    register_context_service("jobs", svc)
    return svc


def fn(name: str) -> str:
    return f"tests.dask_fns:{name}"


async def test_callable_and_argv_jobs_succeed_and_fail_with_their_errors(tmp_path, home, layout, jobs):
    @graph_fn(name="four")
    async def four(*, context):
        j = context.jobs()
        ids = [
            await j.submit({"fn": fn("add"), "args": [2, 3]}, key=context.idempotency_key + "/ok"),
            await j.submit({"fn": fn("boom"), "args": ["no good"]}),
            await j.submit({"argv": [PY, "-c", "print('hello'); print('answer=42')"]}),
            await j.submit({"argv": [PY, "-c", "import sys; print('bad', file=sys.stderr); sys.exit(3)"]}),
            await j.submit({"argv": ["/no/such/program"]}),
        ]
        again = await j.submit({"fn": fn("add"), "args": [2, 3]}, key=context.idempotency_key + "/ok")
        out = []
        for job_id in ids:
            st = await j.wait(job_id)
            out.append({"state": st.state.value, "result": st.result, "error": st.error,
                        "exit_code": st.exit_code, "worker": st.worker,
                        "stdout": await j.logs(job_id), "poll": await j.poll(job_id)})
        return {"ids": ids, "again": again, "out": out}

    async with rt_open(home) as rt:
        outcome = await four.start_run(rt, {})
    assert outcome.status == ev.SUCCEEDED, outcome.error
    ids, out = outcome.outputs["ids"], outcome.outputs["out"]
    assert outcome.outputs["again"] == ids[0], "one key, one job"
    add, boom, ok, bad, missing = out
    assert add["state"] == "succeeded" and add["result"]["sum"] == 5
    assert add["worker"].startswith("tcp://127.0.0.1:")
    assert boom["state"] == "failed" and boom["error"].startswith("ValueError: no good")
    assert ok["state"] == "succeeded" and ok["result"] == "answer=42" and ok["exit_code"] == 0
    assert ok["stdout"] == ["hello", "answer=42"]
    assert ok["poll"]["status"] == "succeeded" and ok["poll"]["result"] == "answer=42"
    assert bad["state"] == "failed" and bad["exit_code"] == 3 and "bad" in bad["error"]
    assert missing["state"] == "failed" and "cannot start '/no/such/program'" in missing["error"]
    store = JobStore(home)
    assert len(list(store.ids())) == 5
    events = run_events(layout, outcome.run_id)
    assert sum(isinstance(e, ev.JobSubmitted) and e.runner == "dask" for e in events) == 5
    listed = json.loads(ag("jobs", "--json", cwd=tmp_path).stdout)
    assert {j["job_id"]: j["state"] for j in listed} == {
        i: o["state"] for i, o in zip(ids, out)}
    assert all(j["worker"].startswith("tcp://") for j in listed if j["job_id"] != ids[4])


async def test_bad_specs_are_refused_with_one_line(home, jobs):
    msgs = await refusals(home, [{"fn": "nocolon"}, {"fn": "a:b", "argv": ["x"]}, {"fn": "a:b", "args": [object()]}])
    assert len(msgs) == 3 and all("\n" not in m and m.startswith("job spec") for m in msgs), msgs


def _gone(pid: int) -> bool:
    from .test_jobs import _zombie_or_gone

    return _zombie_or_gone(pid)


async def test_cancelling_the_waiting_node_ends_an_argv_job_s_whole_group(tmp_path, home, layout, cluster, jobs):
    from aethergraph.runtime.jobs.store import group_members

    async with forker_waiting(tmp_path, home) as (rt, result, seen):
        (run_id,) = rt.runs
        pgid = os.getpgid(seen["kids"][0])
        assert group_members(pgid), "the job and its grandchildren run"
        rt.cancel(run_id, reason="stop it", by="test")
    assert seen["status"].state is JobState.RUNNING
    assert result.outcome.status == ev.CANCELLED
    st = JobStore(home).read(seen["job_id"])
    assert st.state is JobState.CANCELLED and "waits" in st.cancelled_by
    wait_until(lambda: group_members(pgid) == [], what="the job's group to end on its worker")
    assert all(_gone(pid) for pid in seen["kids"])
    assert seen["job_id"] not in cluster.client.list_datasets(), "the scheduler let it go"
    assert_job_cancel_logged_first(layout, result.outcome.run_id)


async def test_cancel_a_running_callable(tmp_path, home, cluster, jobs):
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"

    @graph_fn(name="cancels")
    async def cancels(*, context):
        j = context.jobs()
        job_id = await j.submit({"fn": fn("gated"), "args": [str(ledger), str(gate), "one"]})
        while (await j.status(job_id)).state is not JobState.RUNNING:
            await trio.sleep(0.02)
        st = await j.cancel(job_id)
        return {"job_id": job_id, "state": st.state.value, "by": st.cancelled_by, "worker": st.worker}

    try:
        async with rt_open(home) as rt:
            outcome = await cancels.start_run(rt, {})
        out = outcome.outputs
        assert out["state"] == "cancelled" and out["worker"].startswith("tcp://")
        assert "cancels" in out["by"]
        assert out["job_id"] not in cluster.client.list_datasets()
        assert ledger.read_text() == "one\n"
    finally:
        gate.touch()  # a Python call cannot be stopped: let the worker's thread go


async def test_an_argv_job_past_its_timeout_fails(tmp_path, home, jobs):
    await forker_past_its_timeout(tmp_path, home)


async def until(cond, what: str, timeout: float = 30.0):
    """For conditions in other processes, from trio: check, back off, give up."""
    with trio.fail_after(timeout):
        delay = 0.005
        while not (value := cond()):
            await trio.sleep(delay)
            delay = min(delay * 2, 0.1)
    return value


async def test_a_worker_killed_mid_job_loses_it_and_the_node_retries(tmp_path, home, cluster, jobs):
    from aethergraph import RetryPolicy

    gate, ledger = tmp_path / "gate", tmp_path / "ledger"

    @graph_fn(name="survives", retry=RetryPolicy(max_attempts=2, backoff_first=0.01))
    async def survives(*, context):
        j = context.jobs()
        job_id = await j.submit({"fn": fn("gated"), "args": [str(ledger), str(gate), f"attempt{context.attempt}"]},
                                key=context.idempotency_key)
        st = await j.wait(job_id)
        if st.state is not JobState.SUCCEEDED:
            raise RuntimeError(f"job {job_id} {st.state.value}: {st.error}")
        return {"job_id": job_id, "result": st.result}

    store = JobStore(home)
    async with rt_open(home) as rt:
        async with in_background(survives.start_run, rt, {}) as result:
            await until(lambda: ledger.exists() and ledger.read_text() == "attempt1\n", "attempt 1 to start")
            (first,) = store.ids()
            worker = await until(lambda: store.read(first).worker, "its worker to be known")
            pid = await trio.to_thread.run_sync(cluster.worker_pid, worker)
            os.kill(pid, signal.SIGKILL)
            await until(lambda: ledger.read_text() == "attempt1\nattempt2\n", "attempt 2 to start")
            gate.touch()
    outcome = result.outcome
    assert outcome.status == ev.SUCCEEDED, outcome.error
    lost = store.read(first)
    assert lost.state is JobState.LOST and "worker running it died" in lost.error
    second = outcome.outputs["job_id"]
    assert second != first and store.read(second).state is JobState.SUCCEEDED
    assert outcome.outputs["result"] == "attempt2"
    await trio.to_thread.run_sync(lambda: cluster.client.wait_for_workers(2, timeout=60))


MANY = """
    from aethergraph import graph_fn, register_context_service
    from aethergraph.dask_jobs import DaskJobs

    register_context_service("jobs", DaskJobs())  # the address: AETHERGRAPH_DASK_SCHEDULER

    @graph_fn(name="many")
    async def many(ledger: str, gate: str, *, context):
        j = context.jobs()
        ids = [await j.submit({"fn": "tests.dask_fns:gated", "args": [ledger, gate, f"job{i}"]},
                              key=f"{context.idempotency_key}/{i}") for i in range(20)]
        results = [(await j.wait(job_id)).result for job_id in ids]
        return {"ids": ids, "results": results}
"""


def test_kill_9_the_runtime_with_20_jobs_running_and_resume_collects_them_all(tmp_path, home, layout, cluster,
                                                                               spawn_ag):
    graph = script(tmp_path, "many.py", MANY)
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"
    env = {"AETHERGRAPH_DASK_SCHEDULER": cluster.address}
    runtime = spawn_ag("run", f"{graph}:many", "--input", json.dumps({"ledger": str(ledger), "gate": str(gate)}),
                       env=env, stdout=subprocess.DEVNULL)
    store = JobStore(home)
    try:
        def all_held():
            ids = set(store.ids())
            return len(ids) == 20 and ids <= set(cluster.client.list_datasets())

        wait_until(all_held, what="20 jobs held by the scheduler")
        wait_until(lambda: ledger.exists() and len(ledger.read_text().splitlines()) == 4,
                   what="4 jobs running (2 workers x 2 threads)")
    finally:
        runtime.send_signal(signal.SIGKILL)
        runtime.wait(timeout=10)
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "interrupted"

    proc = spawn_ag("resume", run["run_id"], "--json", env=env)
    wait_until(lambda: sum(isinstance(e, ev.JobStateChanged) and e.note == "reattached"
                           for e in run_events(layout, run["run_id"])) >= 20, what="the reattach")
    gate.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["status"] == "succeeded"
    assert outcome["outputs"]["results"] == [f"job{i}" for i in range(20)]
    assert sorted(ledger.read_text().splitlines()) == sorted(f"job{i}" for i in range(20)), "each ran once"
    assert len(list(store.ids())) == 20
    assert all(store.read(i).state is JobState.SUCCEEDED for i in store.ids())
    assert not set(store.ids()) & set(cluster.client.list_datasets()), "collected, then let go"


async def test_ag_jobs_cancel_reaches_the_cluster(tmp_path, home, cluster, jobs):
    from aethergraph.runtime.jobs.store import group_members

    async with forker_waiting(tmp_path, home) as (rt, result, seen):
        pgid = os.getpgid(seen["kids"][0])
        listed = await trio.to_thread.run_sync(lambda: ag("jobs", cwd=tmp_path).stdout)
        assert "WORKER" in listed and "tcp://127.0.0.1:" in listed and "RUNNING" in listed
        done = await trio.to_thread.run_sync(lambda: ag("jobs", "cancel", seen["job_id"], cwd=tmp_path))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"job {seen['job_id']} cancelled"
    st = result.outcome.outputs
    assert st.state is JobState.CANCELLED and st.cancelled_by.startswith("ag jobs cancel")
    wait_until(lambda: group_members(pgid) == [], what="the job's group to end on its worker")
    assert seen["job_id"] not in cluster.client.list_datasets()


@pytest.mark.parametrize("where", ["local_cluster", "address"])
def test_real_jobs_example_runs_on_dask(tmp_path, cluster, where):
    """The example's --dask flag: a LocalCluster it starts and closes, or the module's cluster."""
    argv = [PY, str(ROOT / "examples" / "real_jobs.py"), "--dask"]
    if where == "address":
        argv.append(cluster.address)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=dict(os.environ, AG_DEMO_STEP_S="0.02"), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "Submitting your job…" in proc.stdout and "finished: energy 0.2" in proc.stdout
    assert "'result': {'name': 'toy-sim', 'energy': 0.2}" in proc.stdout
    store = JobStore(tmp_path / "store")
    (job_id,) = store.ids()
    st = store.read(job_id)
    assert st.runner == "dask" and st.worker
    assert (where == "address") == (st.cluster == cluster.address)


async def test_ship_code_sends_the_worker_side_by_value(tmp_path, home, cluster):
    """For workers that have dask but not aethergraph: the same jobs, the code sent with them."""
    register_context_service("jobs", DaskJobs(cluster.address, ship_code=True))

    @graph_fn(name="shipped")
    async def shipped(*, context):
        j = context.jobs()
        a = await j.submit({"fn": fn("add"), "args": [1, 2]})
        b = await j.submit({"argv": [PY, "-c", "print('shipped')"]})
        return [(await j.wait(a)).result["sum"], (await j.wait(b)).result]

    async with rt_open(home) as rt:
        outcome = await shipped.start_run(rt, {})
    assert outcome.outputs == [3, "shipped"], outcome.error


async def test_a_runtime_that_died_before_unpublishing_leaves_nothing_held(tmp_path, home, cluster, jobs):
    """The end was recorded, then the runtime died before the scheduler was told to forget the
    job: the next runtime to connect tells it (and leaves names that are not its jobs alone)."""

    @graph_fn(name="one")
    async def one(*, context):
        j = context.jobs()
        return (await j.wait(await j.submit({"fn": fn("noop"), "args": [1]}))).job_id

    async with rt_open(home) as rt:
        first = (await one.start_run(rt, {})).outputs
    client = cluster.client
    held = await trio.to_thread.run_sync(lambda: client.submit(int, 1, key=first, pure=False))
    await trio.to_thread.run_sync(lambda: client.publish_dataset(**{first: held, "job-not-ours": held}))
    try:
        async with rt_open(home) as rt:
            await one.start_run(rt, {})
        names = await trio.to_thread.run_sync(client.list_datasets)
        assert first not in names and "job-not-ours" in names
    finally:
        await trio.to_thread.run_sync(lambda: client.unpublish_dataset(["job-not-ours"]))


async def test_a_runtime_that_closes_leaves_cluster_jobs_running_for_the_next(tmp_path, home, cluster, jobs):
    """Closing the runtime closes its client, not the jobs: the scheduler holds them, the store
    still says running, and the next runtime that submits the same key collects that job."""
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"

    @graph_fn(name="leaves")
    async def leaves(*, context):
        j = context.jobs()
        job_id = await j.submit({"fn": fn("gated"), "args": [str(ledger), str(gate), "once"]}, key="the-key")
        while (await j.status(job_id)).state is not JobState.RUNNING:
            await trio.sleep(0.02)
        return job_id

    @graph_fn(name="collects")
    async def collects(*, context):
        j = context.jobs()
        job_id = await j.submit({"fn": fn("gated"), "args": [str(ledger), str(gate), "twice?"]}, key="the-key")
        return {"job_id": job_id, "result": (await j.wait(job_id)).result}

    async with rt_open(home) as rt:
        job_id = (await leaves.start_run(rt, {})).outputs
    store = JobStore(home)
    await until(lambda: store.read(job_id).state is JobState.RUNNING, "the running state on disk")
    # the runtime is closed: nothing of it can still write a wrong "cancelled" from here on
    assert store.read(job_id).state is JobState.RUNNING
    assert job_id in await trio.to_thread.run_sync(cluster.client.list_datasets)
    gate.touch()
    async with rt_open(home) as rt:
        out = (await collects.start_run(rt, {})).outputs
    assert out == {"job_id": job_id, "result": "once"}
    assert ledger.read_text() == "once\n"


async def test_a_callable_past_its_timeout_fails_and_resources_pass_through(tmp_path, home, cluster, jobs):
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"

    @graph_fn(name="limits")
    async def limits(*, context):
        j = context.jobs()
        slow = await j.submit({"fn": fn("gated"), "args": [str(ledger), str(gate), "slow"], "timeout_s": 0.3})
        # no worker of this cluster has a GPU: the scheduler holds the job, queued
        gpu = await j.submit({"fn": fn("add"), "args": [1, 1], "resources": {"GPU": 1}, "priority": 5})
        st = await j.wait(slow)
        queued = (await j.status(gpu)).state
        cancelled = await j.cancel(gpu)
        return {"slow": st, "queued": queued, "gpu": cancelled}

    try:
        async with rt_open(home) as rt:
            out = (await limits.start_run(rt, {})).outputs
    finally:
        gate.touch()  # the timed-out call's worker thread runs until it returns
    assert out["slow"].state is JobState.FAILED and out["slow"].timed_out
    assert "timed out after 0.3s" in out["slow"].error
    assert out["queued"] is JobState.QUEUED
    assert out["gpu"].state is JobState.CANCELLED and out["gpu"].worker == ""
    assert out["gpu"].job_id not in await trio.to_thread.run_sync(cluster.client.list_datasets)


SUBMIT_ONCE = """
    import sys, trio
    from aethergraph import open_runtime, register_context_service
    from aethergraph.dask_jobs import DaskJobs

    jobs = register_context_service("jobs", DaskJobs(sys.argv[2]))

    async def main():
        async with open_runtime(console=False, sidecar=False, handle_sigint=False):
            sys.stdin.readline()  # both processes are up: submit together
            job_id = await jobs.submit({"fn": "tests.dask_fns:gated", "args": [sys.argv[1], sys.argv[3], "ran"]},
                                       key="the-key")
            st = await jobs.wait(job_id)
            print(job_id, st.state.value, flush=True)
            print(st.error, file=sys.stderr)

    trio.run(main)
"""


def test_one_key_is_one_job_across_two_runtimes(tmp_path, home, cluster):
    prog = script(tmp_path, "submit_once.py", SUBMIT_ONCE)
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    gate.touch()
    submit_from_two_processes([PY, prog, str(ledger), cluster.address, str(gate)], ledger, home)


async def test_process_jobs_refuses_what_only_a_cluster_can_do(home):
    from aethergraph.jobs import ProcessJobs

    register_context_service("jobs", ProcessJobs())

    msgs = await refusals(home, [{"fn": fn("add")}, {"argv": ["true"], "resources": {"GPU": 1}},
                                 {"argv": ["true"], "priority": 1}])
    assert len(msgs) == 3 and all(m.startswith("job spec: fn, resources and priority need") for m in msgs), msgs
    assert not list(JobStore(home).ids())


async def test_an_argv_job_s_output_lands_once_whichever_way_comes_first(home):
    """An argv job's output reaches the runtime twice: live chunks from its worker (on trio's
    thread) and the whole output in its end (collected on a worker thread). A chunk that comes
    after the end's tail was written went after it: the output appeared twice (seen under
    load). Each chunk now says the byte it starts at, and both ways write there."""
    from aethergraph.runtime.jobs.base import Job
    from aethergraph.runtime.jobs.dask_runner import DaskRunner
    from aethergraph.runtime.jobs.protocol import JobStatus
    from aethergraph.runtime.jobs.store import new_job_id

    out = b"hello\nanswer=42\n"
    async with rt_open(home) as rt:
        runner = DaskRunner(rt, address="tcp://127.0.0.1:9")  # never connected: no cluster needed
        for order in ("end first", "chunks first", "interleaved"):
            job_id = new_job_id()
            runner.jobs[job_id] = Job(job_id, JobStatus(job_id=job_id, state=JobState.RUNNING))
            chunks = [{"job_id": job_id, "stream": "stdout", "data": out[:6], "at": 0},
                      {"job_id": job_id, "stream": "stdout", "data": out[6:], "at": 6}]
            end = {"exit_code": 0, "stdout": out, "stderr": b"", "started": 1.0, "ended": 2.0}
            if order == "end first":
                await trio.to_thread.run_sync(runner._argv_outcome, job_id, end)
                runner._on_event(chunks)
            elif order == "chunks first":
                runner._on_event(chunks)
                await trio.to_thread.run_sync(runner._argv_outcome, job_id, end)
            else:
                runner._on_event(chunks[:1])
                await trio.to_thread.run_sync(runner._argv_outcome, job_id, end)
                runner._on_event(chunks[1:])
            assert Path(runner.store.path(job_id, "stdout")).read_bytes() == out, order
