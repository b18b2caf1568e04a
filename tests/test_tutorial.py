"""The seed tutorial, on trio: succeed, fail without retry, retry once as a child node."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aethergraph.targets import load_target
from aethergraph.runtime import events as ev
from aethergraph.runtime.store.index import Index

from .conftest import rt_open, TUTORIAL, ag, run_events

SPEC = {"name": "toy-sim", "steps": 3}


@pytest.fixture
def tutorial(monkeypatch):
    fn = load_target(f"{TUTORIAL}:submit_poll_notify")
    module = sys.modules[fn.fn.__module__]
    # Loading the file registered its service; re-register in case another test cleared it.
    from aethergraph import register_context_service

    register_context_service("jobs", module.FakeJobRunner())

    def with_fail_rate(rate: float):
        monkeypatch.setattr(module, "FAIL_RATE", rate)
        return fn

    return with_fail_rate


async def _run(fn, home, answers=()):
    async with rt_open(home, answers=list(answers)) as rt:
        outcome = await fn.start_run(rt, {"spec": SPEC})
    return outcome


async def test_succeeds_with_memory_and_artifacts(tutorial, home, layout, autojump_clock):
    outcome = await _run(tutorial(0.0), home)
    assert outcome.status == ev.SUCCEEDED
    out = outcome.outputs
    assert out["status"] == "succeeded"
    assert out["job_id"].startswith("job_")
    assert out["spec_ref"].startswith("ag://artifact/") and out["result_ref"].startswith("ag://artifact/")

    events = run_events(layout, outcome.run_id)
    kinds = [e.kind for e in events if isinstance(e, ev.MemoryRecorded)]
    assert kinds == ["job_submitted", "job_succeeded"]
    texts = [e.text for e in events if isinstance(e, ev.MessageSent)]
    assert texts[0] == "Submitting your job…"
    assert "Status: succeeded" in texts
    assert texts[-1].startswith(f"✅ Job {out['job_id']} finished. Saved result → ag://artifact/")
    names = [e.name for e in events if isinstance(e, ev.ArtifactWritten)]
    assert names == [f"spec_{out['job_id']}.json", f"result_{out['job_id']}.txt"]
    # the submission went through a tool node
    assert any(isinstance(e, ev.NodeFinished) and e.node == "submit_poll_notify/submit_job" for e in events)

    # artifacts read back, memory is in the index for later processes
    from aethergraph.runtime.store.artifacts import BlobStore, sha_from_ref

    blobs = BlobStore(layout)
    assert json.loads(blobs.read_bytes(sha_from_ref(out["spec_ref"]))) == SPEC
    assert blobs.read_bytes(sha_from_ref(out["result_ref"])) == b"Result for toy-sim"
    index = Index(layout)
    assert [m.kind for m in index.memory(run_id=outcome.run_id, order="asc")] == kinds
    index.close()


async def test_fails_without_retry_when_answer_is_no(tutorial, home, layout, autojump_clock):
    outcome = await _run(tutorial(1.0), home, answers=["no"])
    assert outcome.status == ev.FAILED
    assert outcome.outputs["status"] == "failed"
    assert "result_ref" not in outcome.outputs
    events = run_events(layout, outcome.run_id)
    starts = [e.node for e in events if isinstance(e, ev.NodeStarted)]
    assert starts == ["submit_poll_notify", "submit_poll_notify/submit_job"]
    asks = [e for e in events if isinstance(e, ev.AskOpened)]
    answers = [e for e in events if isinstance(e, ev.AskAnswered)]
    assert len(asks) == 1 and "Retry? (yes/no)" in asks[0].prompt
    assert [(a.answer, a.by) for a in answers] == [("no", "script")]
    assert [e.kind for e in events if isinstance(e, ev.MemoryRecorded)] == ["job_submitted", "job_failed"]
    assert events[-1].status == ev.FAILED


async def test_retries_once_as_child_node(tutorial, home, layout, autojump_clock):
    outcome = await _run(tutorial(1.0), home, answers=["yes", "no"])
    assert outcome.status == ev.FAILED
    events = run_events(layout, outcome.run_id)
    graph_nodes = [e.node for e in events if isinstance(e, ev.NodeStarted) and e.kind == "graph_fn"]
    assert graph_nodes == ["submit_poll_notify", "submit_poll_notify/submit_poll_notify"]
    submitted = [e.data["job_id"] for e in events if isinstance(e, ev.MemoryRecorded) and e.kind == "job_submitted"]
    assert len(submitted) == 2 and submitted[0] != submitted[1]
    # the child's outputs are what the run returns
    assert outcome.outputs["job_id"] == submitted[1]
    assert [e.answer for e in events if isinstance(e, ev.AskAnswered)] == ["yes", "no"]


def _env(**extra):
    env = dict(os.environ, AG_DEMO_TIME_SCALE="0.05")
    env.update(extra)
    return env


def test_script_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(TUTORIAL)], capture_output=True, text=True, timeout=60,
        env=_env(AG_DEMO_FAIL_RATE="0"), cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Submitting your job…" in proc.stdout
    assert "FINAL OUTPUT:" in proc.stdout and "'status': 'succeeded'" in proc.stdout


def test_ag_run_with_scripted_answers(tmp_path, home):
    target = f"{TUTORIAL}:submit_poll_notify"
    proc = ag("run", target, "--input", json.dumps({"spec": SPEC}), "--answer", "yes", "--answer", "no",
              env=_env(AG_DEMO_FAIL_RATE="1"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.count("Retry? (yes/no)") == 2
    assert "Not retrying; stopping here." in proc.stdout
    assert "failed" in proc.stderr.splitlines()[-1]
    runs = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert [r["status"] for r in runs] == ["failed"]
    shown = json.loads(ag("show", runs[0]["run_id"], "--json", cwd=tmp_path).stdout)
    paths = [n["path"] for n in shown["run"]["nodes"]]
    assert "submit_poll_notify/submit_poll_notify" in paths


def test_ask_without_terminal_or_answers_fails_fast(tmp_path):
    """With no sidecar (so no other terminal can answer) and stdin not a terminal."""
    proc = subprocess.run(
        [sys.executable, str(TUTORIAL)], capture_output=True, text=True, timeout=60,
        env=_env(AG_DEMO_FAIL_RATE="1", AETHERGRAPH_SIDECAR="0"), cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "NoAnswerAvailable" in proc.stderr
    assert "cannot be answered" in proc.stderr
    assert "ExceptionGroup" not in proc.stderr
