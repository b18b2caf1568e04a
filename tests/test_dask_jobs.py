"""DaskJobs on a real dask.distributed cluster the module starts: a ``dask scheduler`` and two
``dask worker`` processes on loopback (each a nanny and one worker process of two threads)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

distributed = pytest.importorskip("distributed")

from aethergraph import graph_fn, register_context_service  # noqa: E402
from aethergraph.dask_jobs import DaskJobs  # noqa: E402
from aethergraph.jobs import JobSpecError, JobState  # noqa: E402
from runtime import events as ev  # noqa: E402
from runtime.jobs.store import JobStore  # noqa: E402

from .conftest import ROOT, ag, rt_open, run_events  # noqa: E402
from .test_jobs import FORKER, GATED, script, wait_until  # noqa: E402

PY = sys.executable
DASK = str(Path(PY).parent / "dask")


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen] = []
        env = dict(os.environ, PYTHONPATH=str(ROOT),
                   # a worker's death is the job's end (LOST), not a silent second run elsewhere
                   DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
        self.env = env
        sched_file = folder / "scheduler.json"
        self.procs.append(self._start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                       "--no-dashboard", "--scheduler-file", str(sched_file)], "scheduler"))
        wait_until(lambda: sched_file.exists() and sched_file.stat().st_size, timeout=60, what="the scheduler")
        self.address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            self.procs.append(self._start([DASK, "worker", self.address, "--host", "127.0.0.1",
                                           "--nworkers", "1", "--nthreads", "2", "--no-dashboard",
                                           "--name", f"w{i}"], f"worker{i}"))
        self.client = distributed.Client(self.address, set_as_default=False, timeout=60)
        self.client.wait_for_workers(2, timeout=60)

    def _start(self, argv: list[str], name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.folder, start_new_session=True)

    def worker_pid(self, address: str) -> int:
        return self.client.run(os.getpid, workers=[address])[address]

    def close(self) -> None:
        self.client.close()
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


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
    @graph_fn(name="refused")
    async def refused(*, context):
        msgs = []
        for spec in ({"fn": "nocolon"}, {"fn": "a:b", "argv": ["x"]}, {"fn": "a:b", "args": [object()]}):
            try:
                await context.jobs().submit(spec)
            except JobSpecError as exc:
                msgs.append(str(exc))
        return msgs

    async with rt_open(home) as rt:
        outcome = await refused.start_run(rt, {})
    msgs = outcome.outputs
    assert len(msgs) == 3 and all("\n" not in m and m.startswith("job spec") for m in msgs), msgs
