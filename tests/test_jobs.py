"""Real process jobs: every test starts real processes under real supervisors in a real store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from aethergraph import graph_fn, register_context_service
from aethergraph.jobs import JobState, JobWaitTimeout, ProcessJobs
from aethergraph.runtime import events as ev
from aethergraph.runtime.jobs.store import JobStore, group_members, proc_alive
from aethergraph.runtime.store.index import Index, job_rows

from .agproc import wait_until
from .conftest import ag, in_background, rt_open, run_events

PY = sys.executable


def script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


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


@pytest.fixture
def gated(tmp_path):
    """GATED ready to submit: its argv, the gate the test opens and the ledger it writes."""
    gate, ledger = tmp_path / "gate", tmp_path / "ledger"
    return [PY, script(tmp_path, "gated.py", GATED), str(gate), str(ledger)], gate, ledger


@pytest.fixture
def jobs():
    svc = ProcessJobs(max_parallel=4, scan_interval_s=0.05)
    register_context_service("jobs", svc)
    return svc


@pytest.fixture
def one_at_a_time():
    """Process jobs that run one at a time: the rest queue."""
    register_context_service("jobs", ProcessJobs(max_parallel=1, scan_interval_s=0.05))


async def test_output_is_captured_and_followed_live(tmp_path, home, layout, jobs, gated):
    argv, gate, ledger = gated

    @graph_fn(name="follow_one")
    async def follow_one(*, context):
        j = context.jobs()
        job_id = await j.submit({"argv": argv}, key=context.idempotency_key)
        seen = []
        async for line in j.follow(job_id):
            seen.append((line, (await j.status(job_id)).state))
            if line == "first":
                gate.touch()  # the job is still running: it waits for this
        st = await j.wait(job_id)
        return {"job_id": job_id, "seen": seen, "state": st.state.value, "result": st.result,
                "exit_code": st.exit_code, "tail": await j.logs(job_id, tail=2)}

    async with rt_open(home) as rt:
        outcome = await follow_one.start_run(rt, {})
    out = outcome.outputs
    assert outcome.status == ev.SUCCEEDED, outcome.error
    assert [s[0] for s in out["seen"]] == ["first", "second", "answer=42"]
    assert out["seen"][0][1] is JobState.RUNNING  # seen live, not read after the end
    assert out["state"] == "succeeded" and out["exit_code"] == 0 and out["result"] == "answer=42"
    assert out["tail"] == ["second", "answer=42"]
    assert ledger.read_text() == "ran\n"

    # The folder and the journals (the job's record and states): private, whole; the run's
    # log has the facts, the index the row.
    d = layout.home / "jobs" / out["job_id"]
    assert oct(d.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in d.iterdir()) == ["stderr", "stdout"]
    for name in ("stdout", "stderr"):
        assert oct((d / name).stat().st_mode & 0o777) == "0o600", name
    journals = list((layout.home / "jobs" / "journal").iterdir())
    assert len(journals) == 2  # the runtime's (the record) and its job host's (the states)
    assert oct(journals[0].parent.stat().st_mode & 0o777) == "0o700"
    for p in journals:
        assert oct(p.stat().st_mode & 0o777) == "0o600", p.name
    events = run_events(layout, outcome.run_id)
    states = [e.state for e in events if isinstance(e, ev.JobStateChanged)]
    assert [type(e) for e in events if isinstance(e, ev.JobSubmitted)] == [ev.JobSubmitted]
    assert states[-1] == "succeeded" and "running" in states
    assert not any("first" in json.dumps(getattr(e, "outputs", "") or "") for e in events
                   if isinstance(e, ev.JobStateChanged)), "output stays out of the log"
    index = Index(layout)
    try:
        (row,) = job_rows(index, run_id=outcome.run_id)
    finally:
        index.close()
    assert row["job_id"] == out["job_id"] and row["state"] == "succeeded" and row["exit_code"] == 0
    assert row["node"] == "follow_one" and row["argv"][1] == argv[1]


@asynccontextmanager
async def forker_waiting(tmp_path, home):
    """A run of ``waits``, whose job is FORKER, in a runtime: the block starts once the job has
    printed ``ready`` and its node waits on it, to be cancelled by the test (from inside or
    out). Yields the runtime, the run's ``Background`` and ``seen``: the job's id and status,
    its grandchildren's pids (``kids``)."""
    ready, seen = trio.Event(), {}
    forker = script(tmp_path, "forker.py", FORKER)

    @graph_fn(name="waits")
    async def waits(*, context):
        j = context.jobs()
        job_id = seen["job_id"] = await j.submit({"argv": [PY, forker], "grace_s": 0.3})
        async for line in j.follow(job_id):  # (from a dask worker: followed live from there)
            if line == "ready":
                break
            seen["kids"] = [int(p) for p in line.split()]
        seen["status"] = await j.status(job_id)
        ready.set()
        return await j.wait(job_id)  # cancelled while parked here

    async with rt_open(home) as rt:
        async with in_background(waits.start_run, rt, {}) as result:
            await ready.wait()
            yield rt, result, seen


def assert_job_cancel_logged_first(layout, run_id: str) -> None:
    """The job's cancel is in the run's log before the node's own end."""
    kinds = [(type(e).__name__, getattr(e, "state", "")) for e in run_events(layout, run_id)]
    assert kinds.index(("JobStateChanged", "cancelled")) < kinds.index(("NodeCancelled", ""))


async def test_cancelling_the_waiting_node_kills_the_whole_group(tmp_path, home, layout, jobs):
    async with forker_waiting(tmp_path, home) as (rt, result, seen):
        (run_id,) = rt.runs
        pgid = seen["status"].pid
        assert group_members(pgid), "the job and its grandchildren run"
        rt.cancel(run_id, reason="stop it", by="test")
    assert result.outcome.status == ev.CANCELLED
    store = JobStore(home)
    st = store.read(seen["job_id"])
    assert st.state is JobState.CANCELLED and "waits" in st.cancelled_by
    assert st.signal == signal.SIGTERM
    assert group_members(pgid) == [], "nothing of the job's process group is left"
    for pid in seen["kids"]:
        assert not os.path.exists(f"/proc/{pid}") or _zombie_or_gone(pid)
    assert_job_cancel_logged_first(layout, result.outcome.run_id)


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2:].split()[0] == b"Z"


async def forker_past_its_timeout(tmp_path, home):
    """FORKER submitted with a 0.5 s timeout and waited on: FAILED, timed out, says so. Its status."""
    forker = script(tmp_path, "forker.py", FORKER)

    @graph_fn(name="slow")
    async def slow(*, context):
        j = context.jobs()
        return await j.wait(await j.submit({"argv": [PY, forker], "timeout_s": 0.5, "grace_s": 0.2}))

    async with rt_open(home) as rt:
        outcome = await slow.start_run(rt, {})
    st = outcome.outputs
    assert st.state is JobState.FAILED and st.timed_out and "timed out after 0.5s" in st.error
    return st


async def test_timeout_kills_the_job(tmp_path, home, jobs):
    st = await forker_past_its_timeout(tmp_path, home)
    assert group_members(st.pid) == []


async def test_wait_timeout_cancels_unless_detached(tmp_path, home, jobs, gated):
    argv, gate, ledger = gated

    @graph_fn(name="impatient")
    async def impatient(*, context):
        j = context.jobs()
        a = await j.submit(argv)
        async for line in j.follow(a):  # running for sure (a loaded box starts it late)
            if line == "first":
                break
        with pytest.raises(JobWaitTimeout):
            await j.wait(a, timeout_s=0.2, detach=True)
        assert (await j.status(a)).state is JobState.RUNNING
        with pytest.raises(JobWaitTimeout, match="it was cancelled"):
            await j.wait(a, timeout_s=0.1)
        return await j.status(a)

    async with rt_open(home) as rt:
        outcome = await impatient.start_run(rt, {})
    assert outcome.status == ev.SUCCEEDED, outcome.error
    assert outcome.outputs.state is JobState.CANCELLED


async def test_bad_argv_and_non_zero_exit_fail_clearly(tmp_path, home, layout, jobs):
    @graph_fn(name="bad")
    async def bad(*, context):
        j = context.jobs()
        missing = await j.wait(await j.submit(["no-such-program-xyz", "--flag"]))
        failing = await j.wait(await j.submit({
            "argv": [PY, "-c", "import sys; print('to stderr', file=sys.stderr); sys.exit(3)"]}))
        shell = await j.wait(await j.submit({"argv": ["echo hi; exit 4"], "shell": True}))
        return missing, failing, shell, await j.poll(failing.job_id)

    async with rt_open(home) as rt:
        outcome = await bad.start_run(rt, {})
    missing, failing, shell, polled = outcome.outputs
    assert missing.state is JobState.FAILED and missing.pid == 0 and missing.started is None
    assert missing.error == "cannot start 'no-such-program-xyz': no such program"
    assert failing.state is JobState.FAILED and failing.exit_code == 3
    assert failing.error.startswith("exit code 3") and "to stderr" in failing.error
    assert polled == {"status": "failed", "result": None, "error": failing.error, "exit_code": 3,
                      "job_id": failing.job_id}
    assert shell.exit_code == 4
    assert len(list(JobStore(home).ids())) == 3  # nothing else was started


async def refusals(home, specs: list) -> list[str]:
    """Each spec submitted in one run: what the refusals said (a spec taken adds nothing, so a
    count shows it)."""
    from aethergraph.jobs import JobSpecError

    @graph_fn(name="refused")
    async def refused(*, context):
        msgs = []
        for spec in specs:
            try:
                await context.jobs().submit(spec)
            except JobSpecError as exc:
                msgs.append(str(exc))
        return msgs

    async with rt_open(home) as rt:
        return (await refused.start_run(rt, {})).outputs


async def test_bad_specs_are_refused_with_one_line(home, jobs):
    msgs = await refusals(home, [[], {"argv": "ls"}, {"argv": ["a", "b"], "shell": True},
                                 {"argv": ["x"], "timeout_s": 0}, {"argv": ["x"], "colour": 1}, "ls"])
    assert len(msgs) == 6 and all("\n" not in m and m.startswith("job spec") for m in msgs), msgs
    assert not list(JobStore(home).ids())


async def test_max_parallel_queues_the_rest(tmp_path, home, one_at_a_time, gated):
    argv, gate, ledger = gated

    @graph_fn(name="queue")
    async def queue(*, context):
        j = context.jobs()
        ids = [await j.submit(argv) for _ in range(3)]
        async for line in j.follow(ids[0]):
            if line == "first":
                break
        states = [(await j.status(i)).state for i in ids]
        gate.touch()
        done = [(await j.wait(i)).state for i in ids]
        return states, done

    async with rt_open(home) as rt:
        outcome = await queue.start_run(rt, {})
    states, done = outcome.outputs
    assert states == [JobState.RUNNING, JobState.QUEUED, JobState.QUEUED]
    assert done == [JobState.SUCCEEDED] * 3
    assert ledger.read_text() == "ran\n" * 3


SUBMIT_ONCE = """
    import sys, trio
    from aethergraph import open_runtime, register_context_service
    from aethergraph.jobs import ProcessJobs

    jobs = register_context_service("jobs", ProcessJobs())

    async def main():
        async with open_runtime(console=False, sidecar=False, handle_sigint=False):
            sys.stdin.readline()  # both processes are up: submit together
            job_id = await jobs.submit({"argv": [sys.executable, "-c",
                "import sys; open(sys.argv[1], 'a').write('ran\\\\n')", sys.argv[1]]}, key="the-key")
            st = await jobs.wait(job_id)
            print(job_id, st.state.value, flush=True)

    trio.run(main)
"""


def test_one_key_is_one_job_across_two_processes(tmp_path, home):
    prog = script(tmp_path, "submit_once.py", SUBMIT_ONCE)
    ledger = tmp_path / "ledger"
    submit_from_two_processes([PY, prog, str(ledger)], ledger, home)


def submit_from_two_processes(argv: list[str], ledger, home) -> None:
    """``argv`` (a program that submits one job under a fixed key) in two processes, let go at
    once (each waits for a line on stdin): both see the same job succeed, which ran once."""
    procs = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    lines = {o[0].strip() for o in outs}
    assert len(lines) == 1 and lines.pop().endswith(" succeeded"), outs
    assert ledger.read_text() == "ran\n"
    assert len(list(JobStore(home).ids())) == 1


GRAPH = """
    import sys
    from aethergraph import graph_fn, register_context_service, tool
    from aethergraph.jobs import ProcessJobs

    register_context_service("jobs", ProcessJobs(scan_interval_s=0.05))

    @tool(outputs=["job_id"])
    async def submit(argv: list, *, context):
        return await context.jobs().submit({"argv": argv, "grace_s": 0.3}, key=context.idempotency_key)

    @graph_fn(name="sim")
    async def sim(argv: list, *, context):
        j = context.jobs()
        job_id = (await submit(argv=argv, context=context))["job_id"]
        st = await j.wait(job_id)
        return {"job_id": job_id, "state": st.state.value, "exit_code": st.exit_code,
                "result": st.result, "output": await j.logs(job_id)}
"""


def start_forker_run(spawn_ag, tmp_path, home, *flags: str):
    """``ag run`` of GRAPH in another process, its job the FORKER: the runtime's process, the
    job store and the job's id once the job exists."""
    prog = script(tmp_path, "graph.py", GRAPH)
    forker = script(tmp_path, "forker.py", FORKER)
    runtime = spawn_ag("run", f"{prog}:sim", "--input", json.dumps({"argv": [PY, forker]}), *flags)
    store = JobStore(home)
    return runtime, store, wait_until(lambda: next(iter(store.ids()), None), what="the job")


@pytest.mark.parametrize("job_ends", ["while_resumed", "while_no_runtime"])
def test_kill_9_leaves_the_job_running_and_resume_reattaches(tmp_path, home, layout, job_ends, spawn_ag, gated):
    graph = script(tmp_path, "graph.py", GRAPH)
    argv, gate, ledger = gated
    runtime = spawn_ag("run", f"{graph}:sim", "--input", json.dumps({"argv": argv}), stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: ledger.exists(), what="the job to start")
    finally:
        runtime.send_signal(signal.SIGKILL)
        runtime.wait(timeout=10)
    store = JobStore(home)
    (job_id,) = store.ids()
    st = store.read(job_id)
    assert st.state is JobState.RUNNING and proc_alive(st.pid, st.pid_start), "the job outlived its runtime"
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "interrupted"

    if job_ends == "while_no_runtime":
        gate.touch()
        wait_until(lambda: store.read(job_id).terminal, what="the job to end")
        resumed = ag("resume", run["run_id"], "--json", cwd=tmp_path)
    else:
        proc = spawn_ag("resume", run["run_id"], "--json")
        # the resumed run reattaches: its log says so while the job still runs
        wait_until(lambda: any(isinstance(e, ev.JobStateChanged) and e.note == "reattached"
                               for e in run_events(layout, run["run_id"])), what="the reattach")
        gate.touch()
        out, err = proc.communicate(timeout=60)
        resumed = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert resumed.returncode == 0, resumed.stderr
    outcome = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "succeeded"
    out = outcome["outputs"]
    assert out["job_id"] == job_id and out["state"] == "succeeded" and out["exit_code"] == 0
    assert out["output"] == ["first", "second", "answer=42"] and out["result"] == "answer=42"
    assert ledger.read_text() == "ran\n", "the job ran exactly once"
    assert list(store.ids()) == [job_id]
    listed = json.loads(ag("jobs", "--run", run["run_id"], "--json", cwd=tmp_path).stdout)
    assert [(j["job_id"], j["state"]) for j in listed] == [(job_id, "succeeded")]
    shown = ag("show", run["run_id"], cwd=tmp_path).stdout
    assert f"{job_id} running (reattached)" in shown or job_ends == "while_no_runtime"
    assert f"{job_id} succeeded exit 0" in shown


def test_ag_jobs_logs_and_cancel(tmp_path, home, spawn_ag):
    runtime, store, job_id = start_forker_run(spawn_ag, tmp_path, home, "--json")
    try:
        wait_until(lambda: "ready" in store.tail(job_id, 5), what="the job's output")
        logs = ag("jobs", "logs", job_id, cwd=tmp_path)
        assert logs.returncode == 0 and logs.stdout.splitlines()[-1] == "ready"
        listed = ag("jobs", cwd=tmp_path)
        assert "RUNNING" in listed.stdout and job_id in listed.stdout
        follower = spawn_ag("jobs", "logs", job_id, "-f")
        cancelled = ag("jobs", "cancel", job_id, "--grace", "0.2", cwd=tmp_path)
        assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"job {job_id} cancelled"
        fout, ferr = follower.communicate(timeout=30)
        assert fout.splitlines()[-1] == "ready" and f"job {job_id} cancelled" in ferr
        out, err = runtime.communicate(timeout=60)
    finally:
        if runtime.poll() is None:
            runtime.kill()
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["outputs"]["state"] == "cancelled", err
    st = store.read(job_id)
    assert st.cancelled_by.startswith("ag jobs cancel") and group_members(st.pid) == []
    again = ag("jobs", "cancel", job_id, cwd=tmp_path)
    assert again.returncode == 0 and "already ended: cancelled" in again.stdout
    assert ag("jobs", "logs", "job-nope", cwd=tmp_path).stderr.strip() == "ag: no job 'job-nope' in this store"


async def test_retrying_the_node_ends_its_job_and_the_next_attempt_submits_anew(tmp_path, home, jobs, gated):
    from aethergraph import tool

    argv, gate, ledger = gated
    started = trio.Event()

    @tool(outputs=["job_id"])
    async def submit(*, context):
        return await context.jobs().submit(argv, key=context.idempotency_key)

    @graph_fn(name="attempts")
    async def attempts(*, context):
        j = context.jobs()
        job_id = (await submit(context=context))["job_id"]
        async for line in j.follow(job_id):
            if line == "first":
                break
        if context.attempt == 1:
            started.set()
        else:
            gate.touch()
        st = await j.wait(job_id)
        return {"job_id": job_id, "state": st.state.value}

    async with rt_open(home) as rt:
        async with in_background(attempts.start_run, rt, {}) as result:
            await started.wait()
            (run_id,) = rt.runs
            rt.retry(run_id, "attempts", by="test")
    outcome = result.outcome
    assert outcome.status == ev.SUCCEEDED, outcome.error
    store = JobStore(home)
    ids = sorted(store.ids(), key=lambda i: store.read(i).submitted)
    assert len(ids) == 2 and outcome.outputs["job_id"] == ids[1]
    assert store.read(ids[0]).state is JobState.CANCELLED
    assert store.read(ids[1]).state is JobState.SUCCEEDED
    assert ledger.read_text() == "ran\n" * 2


def test_ctrl_c_on_ag_run_cancels_the_run_and_its_job(tmp_path, home, spawn_ag):
    runtime, store, job_id = start_forker_run(spawn_ag, tmp_path, home)
    try:
        wait_until(lambda: "ready" in store.tail(job_id, 5), what="the job's output")
        runtime.send_signal(signal.SIGINT)
        out, err = runtime.communicate(timeout=60)
    finally:
        if runtime.poll() is None:
            runtime.kill()
    assert runtime.returncode == 130, err
    assert "cancelled" in err.splitlines()[-1]
    st = store.read(job_id)
    assert st.state is JobState.CANCELLED and group_members(st.pid) == []


def test_real_jobs_example_runs_end_to_end(tmp_path):
    from .conftest import ROOT

    proc = subprocess.run(
        [PY, str(ROOT / "examples" / "real_jobs.py")], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, AG_DEMO_STEP_S="0.02"), cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Submitting your job…" in proc.stdout and "finished: energy 0.2" in proc.stdout
    assert "'result': {'name': 'toy-sim', 'energy': 0.2}" in proc.stdout


async def test_jobs_still_queued_when_the_runtime_closes_are_recorded_cancelled(tmp_path, home, one_at_a_time,
                                                                               gated):
    argv, gate, ledger = gated

    @graph_fn(name="fire_and_forget")
    async def fire_and_forget(*, context):
        j = context.jobs()
        first = await j.submit(argv)
        second = await j.submit(argv)
        async for line in j.follow(first):
            if line == "first":
                break
        return first, second

    async with rt_open(home) as rt:
        outcome = await fire_and_forget.start_run(rt, {})
    first, second = outcome.outputs
    store = JobStore(home)
    assert store.read(first).state is JobState.RUNNING, "a started job outlives the runtime"
    st = store.read(second)
    assert st.state is JobState.CANCELLED and st.cancelled_by == "the runtime closed before starting it"
    gate.touch()
    wait_until(lambda: store.read(first).terminal, what="the first job to end")
    assert store.read(first).state is JobState.SUCCEEDED and ledger.read_text() == "ran\n"


async def test_a_job_whose_supervisor_dies_is_lost_and_cancel_still_ends_its_group(tmp_path, home, jobs):
    forker = script(tmp_path, "forker.py", FORKER)

    @graph_fn(name="orphan")
    async def orphan(*, context):
        j = context.jobs()
        job_id = await j.submit({"argv": [PY, forker], "grace_s": 0.2})
        async for line in j.follow(job_id):
            if line == "ready":
                break
        st = await j.status(job_id)
        os.kill(st.supervisor_pid, signal.SIGKILL)  # the supervisor dies; the job does not
        lost = await j.wait(job_id)
        alive = bool(group_members(st.pid))
        cancelled = await j.cancel(job_id)
        return lost, alive, cancelled, st.pid

    async with rt_open(home) as rt:
        outcome = await orphan.start_run(rt, {})
    lost, alive, cancelled, pgid = outcome.outputs
    assert lost.state is JobState.LOST and "supervisor is gone" in lost.error
    assert alive, "the job outlived its supervisor"
    assert cancelled.state is JobState.CANCELLED and group_members(pgid) == []


async def test_kill_9_of_the_job_host_makes_its_running_jobs_lost(tmp_path, home, jobs, gated):
    """One job host per runtime supervises every job it starts: killed with ``kill -9``, each
    of its running jobs is reported LOST (not left hanging, not taken for succeeded) while the
    jobs themselves run on; the next job goes to a new host and is recorded as usual."""
    argv, gate, ledger = gated

    @graph_fn(name="host_dies")
    async def host_dies(*, context):
        j = context.jobs()
        ids = [await j.submit(argv) for _ in range(2)]
        while ledger.exists() is False or ledger.read_text().count("ran") < 2:
            await trio.sleep(0.01)
        running = [await j.status(i) for i in ids]
        if running[0].supervisor_pid != running[1].supervisor_pid:  # not one host: nothing to test
            gate.touch()
            return running, None, None, None, None
        os.kill(running[0].supervisor_pid, signal.SIGKILL)
        lost = [await j.wait(i) for i in ids]
        alive = [bool(group_members(st.pid)) for st in running]
        gate.touch()  # the jobs end now, with nobody to record it
        after = await j.wait(await j.submit(argv))
        return running, lost, alive, after, [(await j.status(i)).state for i in ids]

    async with rt_open(home) as rt:
        outcome = await host_dies.start_run(rt, {})
    running, lost, alive, after, later = outcome.outputs
    assert running[0].supervisor_pid == running[1].supervisor_pid, "one host for the runtime's jobs"
    assert [st.state for st in running] == [JobState.RUNNING] * 2
    assert [st.state for st in lost] == [JobState.LOST] * 2
    assert all("supervisor is gone" in st.error for st in lost)
    assert alive == [True, True], "the jobs outlived their host"
    assert later == [JobState.LOST] * 2, "their end, unrecorded, stays unknown"
    assert after.state is JobState.SUCCEEDED and after.supervisor_pid != running[0].supervisor_pid
    wait_until(lambda: ledger.read_text() == "ran\n" * 3, what="every job to have run once")


def test_two_job_hosts_given_one_job_run_it_once(tmp_path, home):
    """After a resume two job hosts may hold one queued job (the dead runtime's host starts
    what it was handed; the new runtime hands it to its own). The claim is the job folder's
    ``mkdir``: one host wins and runs it, the other only says it ended; the job ran once and
    reads SUCCEEDED, whatever order the two hosts' claims reached the journals in."""
    from aethergraph.runtime.jobs.journal import JournaledStore
    from aethergraph.runtime.jobs.protocol import ENCODER, JobRecord, JobSpec
    from aethergraph.runtime.jobs.runner import _SERVE
    from aethergraph.runtime.jobs.store import new_job_id

    os.makedirs(home, exist_ok=True)
    store = JournaledStore(home).ensure()
    ledger = tmp_path / "ledger"
    record = JobRecord(job_id=new_job_id(), submitted=1.0, spec=JobSpec(
        argv=[PY, "-c", f"open({str(ledger)!r}, 'a').write('ran\\n')"]))
    store.create(record)
    store.writer.flush()
    line = ENCODER.encode(record) + b"\t" + store.root.as_posix().encode() + b"\n"
    argv = [PY, "-I", "-c", _SERVE, "--serve", "--max-parallel", "1"]
    hosts = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)]
    for host in hosts:  # both get the job, then the end of their input: they exit once done
        host.stdin.write(line)
        host.stdin.close()
    # Each host's stdout closes when it exits (the process Popen started left at once).
    for host in hosts:
        host.stdout.read()
        host.wait()
    assert ledger.read_text() == "ran\n", "one claim, one run"
    st = JobStore(home).read(record.job_id)
    assert st.state is JobState.SUCCEEDED and st.exit_code == 0, st
    journals = [p for p in (store.root / "journal").iterdir() if p.name != Path(store.writer.path).name]
    assert len(journals) == 2  # each host's, and each claimed the job
    for p in journals:
        assert any('"state":"queued"' in ln and record.job_id in ln for ln in p.read_text().splitlines())


async def test_a_job_cancelled_before_its_host_claims_it_never_runs(tmp_path, home):
    """A cancel of a job handed to the host but not started claims it CANCELLED (its folder,
    then the state); the host, coming to it, finds the folder made and does not run it."""
    register_context_service("jobs", ProcessJobs(max_parallel=1))
    ledger = tmp_path / "ledger"

    @graph_fn(name="cancel_unclaimed")
    async def cancel_unclaimed(*, context):
        j = context.jobs()
        gate = tmp_path / "gate"
        first = await j.submit([PY, "-c", GATED_INLINE, str(gate), str(tmp_path / "first")])
        second = await j.submit([PY, "-c", f"open({str(ledger)!r}, 'a').write('ran\\n')"])
        while (await j.status(first)).state is not JobState.RUNNING:
            await trio.sleep(0.01)
        st = await j.cancel(second)  # handed to the host (it keeps 2 x max_parallel), not started
        gate.touch()
        return {"second": st.state.value, "first": (await j.wait(first)).state.value,
                "id": second}

    async with rt_open(home) as rt:
        outcome = await cancel_unclaimed.start_run(rt, {})
    assert outcome.status == ev.SUCCEEDED, outcome.error
    out = outcome.outputs
    assert out == {"second": "cancelled", "first": "succeeded", "id": out["id"]}
    assert not ledger.exists(), "a job cancelled before it started never runs"
    st = JobStore(home).read(out["id"])
    assert st.state is JobState.CANCELLED and st.error == "cancelled before it started"


GATED_INLINE = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"


async def test_a_job_cancelled_right_after_its_submit_is_cancelled_and_seen_by_others(tmp_path, home):
    """A record may still be gathered (written once per burst of submits): a cancel, and any
    other process reading the store once the burst is written, still find the job."""
    register_context_service("jobs", ProcessJobs(max_parallel=1))

    @graph_fn(name="cancel_at_once")
    async def cancel_at_once(*, context):
        j = context.jobs()
        ids = [await j.submit([PY, "-c", "pass"]) for _ in range(3)]
        st = await j.cancel(ids[-1], grace_s=0)
        await trio.sleep(0.01)  # the dispatcher's turn: the records of the burst are written
        seen = JobStore(home).read(ids[1]).state  # another reader, as `ag jobs` is
        for job_id in ids[:-1]:
            await j.wait(job_id)
        return {"cancelled": st.state.value, "seen": seen.value}

    async with rt_open(home) as rt:
        outcome = await cancel_at_once.start_run(rt, {})
    assert outcome.status == ev.SUCCEEDED, outcome.error
    assert outcome.outputs["cancelled"] == "cancelled"
    assert outcome.outputs["seen"] in ("queued", "running", "succeeded")
