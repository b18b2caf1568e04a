"""What the job tests share (test_jobs: processes, test_dask_jobs: a dask cluster): the jobs
they run, waiting for what happens in other processes, and driving a run from outside while it
waits on a job."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable

import trio

from .conftest import run_events


def script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def wait_until(cond, timeout: float = 20.0, what: str = "condition"):
    """For conditions in other processes (nothing to await on): check, back off, give up."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# A job that says it started, then waits for a file the test creates: the test decides when the
# job ends, so nothing depends on how fast this machine is.
GATED = """
    import os, sys, time
    gate, ledger = sys.argv[1], sys.argv[2]
    with open(ledger, "a") as f:
        f.write("ran\\n")
    print("first", flush=True)
    while not os.path.exists(gate):
        time.sleep(0.01)
    print("second", flush=True)
    print("answer=42")
"""

# A job that forks two grandchildren in its own group (one ignores SIGTERM) and waits.
FORKER = """
    import subprocess, sys, time
    kids = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
        subprocess.Popen([sys.executable, "-c",
                          "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]),
    ]
    time.sleep(0.2)  # let the second one install its handler
    print(" ".join(str(k.pid) for k in kids), flush=True)
    print("ready", flush=True)
    time.sleep(60)
"""


def gated_job(tmp_path) -> tuple[list[str], object, object]:
    """A GATED job: its argv, the gate the test creates to end it, the ledger it appends to."""
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"
    return [sys.executable, script(tmp_path, "gated.py", GATED), str(gate), str(ledger)], gate, ledger


async def refusals(jobs, specs) -> list[str]:
    """What ``submit`` says of each spec it refuses (JobSpecError); one message each."""
    from aethergraph.jobs import JobSpecError

    msgs = []
    for spec in specs:
        try:
            await jobs.submit(spec)
        except JobSpecError as exc:
            msgs.append(str(exc))
    return msgs


def one_key_from_two_processes(argv: list[str]) -> None:
    """Two processes run ``argv`` (a script that submits one job under one key and waits for
    it) and are let go at once: both report the same job, succeeded."""
    procs = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    lines = {o[0].strip() for o in outs}
    assert len(lines) == 1 and lines.pop().endswith(" succeeded"), outs


async def follow_until(jobs, job_id: str, mark: str) -> str:
    """Follow the job's output up to the line ``mark``; return the line before it."""
    before = ""
    async for line in jobs.follow(job_id):
        if line == mark:
            return before
        before = line
    raise AssertionError(f"the output of job {job_id} ended without {mark!r}")


async def forker_kids(jobs, job_id: str) -> list[int]:
    """The pids of a FORKER job's grandchildren, once it says it is ready."""
    return [int(p) for p in (await follow_until(jobs, job_id, "ready")).split()]


def waits_on_forker(tmp_path, ready: trio.Event, seen: dict):
    """A graph ("waits") that submits a FORKER job, notes in ``seen`` its id, grandchildren
    and status once they run, sets ``ready`` and waits for the job's end (its output)."""
    from aethergraph import graph_fn

    forker = script(tmp_path, "forker.py", FORKER)

    @graph_fn(name="waits")
    async def waits(*, context):
        j = context.jobs()
        job_id = seen["job_id"] = await j.submit({"argv": [sys.executable, forker], "grace_s": 0.3})
        seen["kids"] = await forker_kids(j, job_id)  # (from a cluster: followed live from its worker)
        seen["status"] = await j.status(job_id)
        ready.set()
        return await j.wait(job_id)  # cancelled from outside while parked here

    return waits


async def run_while(rt, graph, act: Callable[[], Awaitable[None]], inputs: dict | None = None):
    """Start a run of ``graph`` and, while it runs, ``await act()``; the run's outcome."""
    result: dict = {}

    async def go():
        result["outcome"] = await graph.start_run(rt, inputs or {})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(go)
        await act()
    return result["outcome"]


async def cancel_forker_run(rt, tmp_path, seen: dict, pgid_of: Callable[[dict], int]):
    """Run the "waits" graph (``waits_on_forker``); once its job and grandchildren run (their
    process group, ``pgid_of(seen)``, noted as ``seen["pgid"]``), cancel the run from outside.
    The run's outcome."""
    from aethergraph.runtime.jobs.store import group_members

    ready = trio.Event()
    waits = waits_on_forker(tmp_path, ready, seen)

    async def cancel_it():
        await ready.wait()
        (run_id,) = rt.runs
        seen["pgid"] = pgid_of(seen)
        assert group_members(seen["pgid"]), "the job and its grandchildren run"
        rt.cancel(run_id, reason="stop it", by="test")

    return await run_while(rt, waits, cancel_it)


def zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2:].split()[0] == b"Z"


def assert_job_cancel_logged_before_node_end(layout, run_id: str) -> None:
    """The job's cancel is in the run's log before its node's own end."""
    kinds = [(type(e).__name__, getattr(e, "state", "")) for e in run_events(layout, run_id)]
    assert kinds.index(("JobStateChanged", "cancelled")) < kinds.index(("NodeCancelled", ""))
