"""Durable execution: kill -9 the tutorial at many points, resume, and nothing is done twice."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import pytest

from aethergraph.runtime import events as ev
from aethergraph.runtime.store.kv import KVStore
from aethergraph.runtime.store.logfile import read_events

from .conftest import TUTORIAL, ag, crash_run

pytestmark = pytest.mark.slow

TARGET = f"{TUTORIAL}:submit_poll_notify"
INPUT = json.dumps({"spec": {"name": "toy-sim", "steps": 3}})


def env(fault: str | None = None, fail_rate: str = "0", durability: str = "strict") -> dict:
    e = {"AG_DEMO_TIME_SCALE": "0.05", "AG_DEMO_FAIL_RATE": fail_rate, "AETHERGRAPH_DURABILITY": durability}
    if fault:
        e["AETHERGRAPH_FAULT"] = fault
    return e


def crash_tutorial(tmp_path, fault: str, fail_rate: str = "0", durability: str = "strict") -> str:
    proc = ag("run", TARGET, "--input", INPUT, env=env(fault, fail_rate, durability), cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "interrupted"
    return run["run_id"]


def submitted_jobs(layout) -> list[str]:
    kv = KVStore(layout)
    try:
        return kv.get("fake-jobs", "submitted", [])
    finally:
        kv.close()


def memory_kinds(layout, run_id) -> list[str]:
    return [e.kind for e in read_events(layout.run_log(run_id)) if isinstance(e, ev.MemoryRecorded)]


@pytest.mark.parametrize(
    ("fault", "durability"),
    [
        ("kill:node_started:submit_poll_notify/submit_job", "strict"),  # before the submission
        ("kill:node_finished:submit_poll_notify/submit_job", "strict"),  # submitted, result not logged
        ("kill:memory_recorded:job_submitted", "strict"),  # submitted, not yet recorded
        ("kill:message_sent:Status: running", "strict"),  # while polling
        ("kill:message_sent:Status: running", "batch"),  # the same, with the default durability
        ("kill:artifact_written:result_", "strict"),  # while writing the result artifact
    ],
)
def test_resume_after_kill_finishes_with_one_submission(tmp_path, layout, fault, durability):
    run_id = crash_tutorial(tmp_path, fault, durability=durability)
    resumed = ag("resume", run_id, "--json", env=env(), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    outcome = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert outcome["run_id"] == run_id and outcome["status"] == "succeeded"
    out = outcome["outputs"]
    assert out["status"] == "succeeded" and out["result_ref"].startswith("ag://artifact/")
    assert ag("artifacts", "cat", out["result_ref"], cwd=tmp_path).stdout == "Result for toy-sim"

    jobs = submitted_jobs(layout)
    assert jobs == [out["job_id"]], "the job must be submitted exactly once"
    assert memory_kinds(layout, run_id) == ["job_submitted", "job_succeeded"]
    events = read_events(layout.run_log(run_id))
    assert sum(isinstance(e, ev.RunResumed) for e in events) == 1
    assert sum(isinstance(e, ev.RunFinished) for e in events) == 1
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    check = ag("check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout


def test_pending_ask_is_reopened_with_its_id_on_resume(tmp_path, layout):
    run_id = crash_tutorial(tmp_path, "kill:ask_opened", fail_rate="1")
    before = [e.ask_id for e in read_events(layout.run_log(run_id)) if isinstance(e, ev.AskOpened)]
    resumed = ag("resume", run_id, "--answer", "no", env=env(fail_rate="1"), cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr  # the job failed and was not retried
    events = read_events(layout.run_log(run_id))
    opened = [e.ask_id for e in events if isinstance(e, ev.AskOpened)]
    answered = [e for e in events if isinstance(e, ev.AskAnswered)]
    assert len(set(opened)) == 1 and (not before or before[0] == opened[0])
    assert [(a.ask_id, a.answer) for a in answered] == [(opened[0], "no")]
    assert len(submitted_jobs(layout)) == 1
    assert ag("check", cwd=tmp_path).returncode == 0


def test_answer_while_dead_then_resume(tmp_path, layout):
    # The process dies right after its ask reached the disk, before anyone answered.
    run_id = crash_tutorial(tmp_path, "killafter:ask_opened", fail_rate="1")
    asks = [e for e in read_events(layout.run_log(run_id)) if isinstance(e, ev.AskOpened)]
    assert len(asks) == 1
    # no runtime is alive: the answer is kept in the run's log
    answered = ag("answer", asks[0].ask_id, "nope", cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    assert f"ag resume {run_id}" in answered.stdout
    resumed = ag("resume", run_id, env=env(fail_rate="1"), cwd=tmp_path)
    assert resumed.returncode == 1
    assert "Retry? (yes/no)" not in resumed.stdout, "an answered ask is not asked again"
    events = read_events(layout.run_log(run_id))
    assert [(e.answer, e.by.split(" (")[0]) for e in events if isinstance(e, ev.AskAnswered)] == [("nope", "ag answer")]
    assert events[-1].status == "failed"


def test_retry_a_failed_run_replays_or_starts_fresh(tmp_path, layout):
    failed = ag("run", TARGET, "--input", INPUT, "--answer", "no", env=env(fail_rate="1"), cwd=tmp_path)
    assert failed.returncode == 1
    (first,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    first_job = [e.data["job_id"] for e in read_events(layout.run_log(first["run_id"]))
                 if isinstance(e, ev.MemoryRecorded) and e.kind == "job_submitted"][0]

    replay = ag("retry", first["run_id"], "--answer", "no", env=env(fail_rate="0"), cwd=tmp_path)
    assert replay.returncode == 1  # the replayed submission is the same failed job
    fresh = ag("retry", first["run_id"], "--fresh", env=env(fail_rate="0"), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    runs = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert [r["attempt_of"] for r in runs] == [first["run_id"], first["run_id"], ""]
    replay_job = [e.data["job_id"] for e in read_events(layout.run_log(runs[1]["run_id"]))
                  if isinstance(e, ev.MemoryRecorded) and e.kind == "job_submitted"][0]
    assert replay_job == first_job
    assert len(submitted_jobs(layout)) == 2  # the first run's job, and the fresh retry's


DIVERGING = textwrap.dedent(
    """
    import os
    import trio
    from aethergraph import graph_fn, tool

    @tool()
    async def fetch(n: int):
        return n * 10

    @graph_fn(name="pipeline")
    async def pipeline(*, context):
        a = await fetch(1)
        b = await fetch(int(os.environ.get("SECOND", "2")))
        await context.memory().record("got", {"a": a, "b": b})
        await trio.sleep(0)
        return {"a": a, "b": b}
    """
)


def test_divergence_stops_the_resume_with_what_differed(tmp_path, layout):
    crash_run(tmp_path, "pipeline.py", DIVERGING, "pipeline", "kill:memory_recorded:got")
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    diverged = ag("resume", run["run_id"], env={"SECOND": "3"}, cwd=tmp_path)
    assert diverged.returncode == 1
    assert "resume diverged at node pipeline/fetch#2" in diverged.stderr
    assert "other arguments" in diverged.stderr
    # with the code as it was, the resume replays both tool calls and finishes
    ok = ag("resume", run["run_id"], "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["outputs"] == {"a": {"result": 10}, "b": {"result": 20}}


def test_resume_refuses_runs_that_are_not_interrupted(tmp_path):
    done = ag("run", TARGET, "--input", INPUT, env=env(), cwd=tmp_path)
    assert done.returncode == 0
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    out = ag("resume", run["run_id"], cwd=tmp_path)
    assert out.returncode == 2 and "nothing to resume" in out.stderr
    assert ag("resume", "20200101-000000-abcdef", cwd=tmp_path).returncode == 2


async def test_resume_through_the_sidecar(tmp_path, home, layout):
    import trio

    from aethergraph.runtime.sidecar.client import SidecarClient, SidecarError, find_runtimes

    from .conftest import rt_open

    await trio.to_thread.run_sync(crash_run, tmp_path, "pipeline.py", DIVERGING, "pipeline", "kill:memory_recorded:got")
    (path,) = list(layout.iter_logs())
    run_id = path.stem
    async with rt_open(home, sidecar=True):
        (advert,) = find_runtimes(str(home))
        async with SidecarClient.connect(advert, client="tester") as c:
            # The run is resumed by a process of its own (ag resume, detached), not in this one.
            started = await c.resume(run_id)
            assert started["pid"] != os.getpid()
            with trio.fail_after(60):
                while not any(type(e) is ev.RunFinished for e in read_events(path, warn=False)):
                    await trio.sleep(0.05)
            e = read_events(path)[-1]
            assert e.status == "succeeded" and e.outputs == {"a": {"result": 10}, "b": {"result": 20}}
            with pytest.raises(SidecarError) as info:
                await c.resume(run_id)
            assert info.value.code == "cannot_resume" and "nothing to resume" in str(info.value)
