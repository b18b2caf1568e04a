"""Step identity: what the code asked for, not when it ran (issue 13).

A crash matrix of real `ag run` processes killed with SIGKILL at random points, then `ag resume`:
fan-outs of same-name tool calls in (nested) nurseries with random latencies, concurrent asks
answered by id, concurrent memory records, artifact writes and messages. trio varies task
order on purpose, so every trial is a different interleaving; none may mix up what was done.

The suite runs ``AG_CRASH_TRIALS`` trials per case (default 8); ``just crash-matrix`` runs 30.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aethergraph.runtime import events as ev
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events

from . import agproc
from .conftest import ag

TRIALS = int(os.environ.get("AG_CRASH_TRIALS", "8"))
PARALLEL = 2


def start_ag(*args: str, env: dict, cwd: Path) -> subprocess.Popen:
    """A trial's ``ag``: its output is not read (only its stderr, when it fails)."""
    return agproc.start_ag(*args, env=env, cwd=cwd, stdout=subprocess.DEVNULL)


def wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 20.0):
    """Poll ``cond()`` (a look at real files) until it returns something truthy."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            return cond()
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def only_log(layout: StoreLayout) -> Path | None:
    logs = list(layout.iter_logs())
    return logs[0] if logs else None


def events_of(path: Path) -> list[ev.Event]:
    return read_events(path, warn=False)


def kill(proc: subprocess.Popen) -> bool:
    """SIGKILL ``proc``; True when it was still running (the trial crashed it)."""
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stderr is not None:
        proc.stderr.close()
    return alive and proc.returncode == -signal.SIGKILL


def run_trials(trial, n: int) -> list:
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(trial, range(n)))


# -- tool fan-out ------------------------------------------------------------------------------

FANOUT = textwrap.dedent(
    """
    import os, random, trio
    from aethergraph import graph_fn, tool

    LOG = os.environ["FANOUT_EXEC_LOG"]

    @tool()
    async def work(x: int):
        with open(LOG, "a") as f:  # one line per execution that started
            f.write(f"{x}\\n")
        await trio.sleep(random.uniform(0.01, 0.1))
        return {"y": x * x}

    @graph_fn(name="branch")
    async def branch(b: int, *, context):
        out = {}
        async def one(x):
            out[x] = (await work(x=x))["y"]
            await context.memory().record("done", {"x": x})
            await context.memory().record("seen", {"b": b})  # identical in all four tasks
            await context.artifacts().write_text(f"r{x}.txt", str(x))
            await context.channel().send_text(f"done {x}")
        async with trio.open_nursery() as n:
            for i in range(4):
                n.start_soon(one, b * 100 + i)
        return out

    @graph_fn(name="fanout")
    async def fanout(*, context):
        res = {}
        async def top(x):
            res[str(x)] = (await work(x=x))["y"]
        async def sub(b):
            for k, v in (await branch(b=b)).items():
                res[str(k)] = v
        async with trio.open_nursery() as n:
            for i in range(8):
                n.start_soon(top, i)
            for b in (1, 2):
                n.start_soon(sub, b)
        return dict(sorted(res.items()))
    """
)
XS = list(range(8)) + [100, 101, 102, 103, 200, 201, 202, 203]
EXPECTED = {str(x): x * x for x in sorted(XS)}


def finished_work(events: list[ev.Event]) -> set[int]:
    """The ``work(x)`` calls whose result is in the log."""
    started = {e.node: e.inputs["x"] for e in events if type(e) is ev.NodeStarted and e.name == "work"}
    return {started[e.node] for e in events if type(e) is ev.NodeFinished and e.node in started}


def executions(path: Path) -> Counter:
    return Counter(int(line) for line in path.read_text().split()) if path.exists() else Counter()


def trial_folder(folder: Path, name: str, body: str) -> tuple[Path, Path, StoreLayout]:
    """A trial's own folder: its script ``name`` (``body``), and its store (not made yet)."""
    folder.mkdir()
    script = folder / name
    script.write_text(body)
    return script, folder / "store", StoreLayout.at(folder / "store")


def fanout_trial(base: Path, durability: str, seed: int) -> bool:
    rng = random.Random(seed)
    work_dir = base / f"{durability}-{seed}"
    script, home, layout = trial_folder(work_dir, "fanout.py", FANOUT)
    exec_log = work_dir / "exec.log"
    env = {"AETHERGRAPH_HOME": str(home), "FANOUT_EXEC_LOG": str(exec_log)}
    proc = start_ag("run", f"{script}:fanout", "--durability", durability, env=env, cwd=work_dir)
    wait_for(lambda: exec_log.exists(), proc, "the first tool call")
    time.sleep(rng.uniform(0, 0.1))
    crashed = kill(proc)
    path = only_log(layout)
    if path is None:  # killed before the writer's first flush (batch): no run to resume
        assert durability == "batch"
        return False
    before = events_of(path)
    done_before = finished_work(before)
    ran_before = executions(exec_log)
    if crashed and not any(type(e) is ev.RunFinished for e in before):
        resumed = ag("resume", path.stem, "--json", env=env, cwd=work_dir)
        assert resumed.returncode == 0, (seed, resumed.stdout, resumed.stderr)
        outcome = json.loads(resumed.stdout.strip().splitlines()[-1])
        assert outcome["status"] == "succeeded", (seed, outcome)
    else:
        crashed = False
    events = events_of(path)
    (finished,) = [e for e in events if type(e) is ev.RunFinished]
    assert finished.status == "succeeded" and finished.outputs == EXPECTED, (seed, finished)
    ran = executions(exec_log)
    again = {x: ran[x] - ran_before[x] for x in done_before if ran[x] != ran_before[x]}
    assert not again, f"trial {seed}: finished tool calls ran again after resume: {again}"
    assert set(ran) == set(XS)
    # A call keeps its readable path across the resume, and no path names two calls.
    named = {(e.step, e.node) for e in events if type(e) is ev.NodeStarted}
    assert len({s for s, _ in named}) == len({n for _, n in named}) == len(named), sorted(named)
    recorded = [e.data["x"] for e in events if type(e) is ev.MemoryRecorded and e.kind == "done"]
    assert sorted(recorded) == [x for x in XS if x >= 100], f"trial {seed}: memory {sorted(recorded)}"
    seen = Counter(e.data["b"] for e in events if type(e) is ev.MemoryRecorded and e.kind == "seen")
    assert seen == {1: 4, 2: 4}, f"trial {seed}: identical records {seen}"
    written = sorted(e.name for e in events if type(e) is ev.ArtifactWritten)
    assert written == sorted(f"r{x}.txt" for x in XS if x >= 100), f"trial {seed}: artifacts {written}"
    said = sorted(e.text for e in events if type(e) is ev.MessageSent)
    assert said == sorted(f"done {x}" for x in XS if x >= 100), f"trial {seed}: messages {said}"
    return crashed


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["batch", "strict"])
def test_crash_matrix_fanout_of_same_name_tools(tmp_path, durability):
    crashed = run_trials(lambda i: fanout_trial(tmp_path, durability, i), TRIALS)
    # Most kills land mid-run; a trial whose run had already finished still checks its outputs.
    assert sum(crashed) >= TRIALS // 2, crashed


# -- concurrent asks ---------------------------------------------------------------------------

INTAKE = textwrap.dedent(
    """
    import os, random, trio
    from aethergraph import graph_fn

    @graph_fn(name="intake")
    async def intake(*, context):
        ch = context.channel()
        out = {}
        async def ask(key, prompt):
            await trio.sleep(random.uniform(0, 0.005))
            out[key] = await ch.ask_text(prompt)
        async with trio.open_nursery() as n:
            n.start_soon(ask, "name", "What's your name?")
            n.start_soon(ask, "age", "How old are you?")
        await context.memory().record("intake", dict(out))
        await trio.sleep(float(os.environ.get("LINGER", "0")))  # where the kill lands
        return out
    """
)
ANSWERS = {"What's your name?": "Ada", "How old are you?": "42"}


def asks_trial(base: Path, seed: int) -> None:
    rng = random.Random(seed)
    work_dir = base / f"asks-{seed}"
    script, home, layout = trial_folder(work_dir, "intake.py", INTAKE)
    env = {"AETHERGRAPH_HOME": str(home)}
    proc = start_ag("run", f"{script}:intake", env={**env, "LINGER": "60"}, cwd=work_dir)

    def both_open():
        path = only_log(layout)
        if path is None:
            return None
        opened = [e for e in events_of(path) if type(e) is ev.AskOpened]
        return opened if len(opened) == 2 else None

    opened = wait_for(both_open, proc, "two open asks")
    # One answered live through the runtime's sidecar (in a random order), by id...
    first = opened[rng.randrange(2)]
    live = ag("answer", first.ask_id, ANSWERS[first.prompt], env=env, cwd=work_dir)
    assert live.returncode == 0, live.stderr
    time.sleep(rng.uniform(0, 0.02))
    assert kill(proc)
    path = only_log(layout)
    # ...the other (and the first, if its answer had not reached the disk) while nobody runs it.
    answered = {e.ask_id for e in events_of(path) if type(e) is ev.AskAnswered}
    for ask in opened:
        if ask.ask_id not in answered:
            offline = ag("answer", ask.ask_id, ANSWERS[ask.prompt], env=env, cwd=work_dir)
            assert offline.returncode == 0, offline.stderr
    resumed = ag("resume", path.stem, "--json", env=env, cwd=work_dir)
    assert resumed.returncode == 0, (seed, resumed.stdout, resumed.stderr)
    outcome = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert outcome["outputs"] == {"name": "Ada", "age": "42"}, f"trial {seed}: {outcome}"
    events = events_of(path)
    assert sum(type(e) is ev.AskOpened for e in events) == 2, "no ask is asked again"
    (record,) = [e for e in events if type(e) is ev.MemoryRecorded]
    assert record.data == {"name": "Ada", "age": "42"}


@pytest.mark.slow
def test_crash_matrix_concurrent_asks_keep_their_answers(tmp_path):
    run_trials(lambda i: asks_trial(tmp_path, i), TRIALS)


# -- declared outputs --------------------------------------------------------------------------


async def test_declared_outputs_are_checked_and_may_be_given_positionally(home, layout):
    from aethergraph import graph_fn, tool

    from .conftest import rt_open, run_events

    @tool(outputs=["x", "y"])
    def half():
        return {"x": 1}

    @tool(["x"])
    def positional():
        return 5

    @graph_fn(name="g")
    async def g(*, context):
        got = await positional()
        try:
            return {"got": got, "half": await half()}
        except Exception as exc:
            return {"got": got, "error": f"{type(exc).__name__}: {exc}"}

    async with rt_open(home) as rt:
        outcome = await g.start_run(rt, {})
    assert outcome.outputs == {
        "got": {"x": 5},
        "error": "MissingOutputs: tool 'half' missing outputs: y (declared: x, y; returned: x)",
    }
    (failed,) = [e for e in run_events(layout, outcome.run_id) if type(e) is ev.NodeFailed]
    assert failed.node == "g/half" and failed.error.type == "MissingOutputs"
    with pytest.raises(TypeError, match="outputs given twice"):
        tool(["x"], outputs=["y"])


# -- scripted answers that do not fit ----------------------------------------------------------

NAME = textwrap.dedent(
    """
    from aethergraph import graph_fn

    @graph_fn(name="hello")
    async def hello(*, context):
        return {"name": await context.channel().ask_text("What's your name?")}
    """
)


@pytest.mark.slow
def test_ag_run_refuses_an_empty_scripted_answer_and_takes_the_next(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text(NAME)
    proc = ag("run", f"{script}:hello", "--answer", "", "--answer", "Ada", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "✗ scripted answer '' refused for ask" in proc.stderr
    assert "the answer is empty; this ask needs some text" in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["outputs"] == {"name": "Ada"}


# -- the real error of a failed run ------------------------------------------------------------

FAILING = textwrap.dedent(
    """
    import trio
    from aethergraph import graph_fn, tool

    @tool()
    async def work(x: int):
        await trio.sleep(0)
        if x == 3:
            raise RuntimeError("disk full")
        return x

    @graph_fn(name="branch")
    async def branch(*, context):
        async with trio.open_nursery() as n:
            for x in range(5):
                n.start_soon(work, x)

    @graph_fn(name="main")
    async def main(*, context):
        async with trio.open_nursery() as n:
            n.start_soon(branch)
    """
)


@pytest.mark.slow
def test_failed_run_names_the_leaf_exception_and_keeps_its_traceback(tmp_path, layout):
    import re

    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    proc = ag("run", f"{script}:main", "--json", cwd=tmp_path)
    assert proc.returncode == 1
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["error"]["type"] == "RuntimeError"
    assert re.fullmatch(r"disk full \(in node main/branch/work(#\d)?\)", outcome["error"]["message"])
    assert re.search(r"failed: RuntimeError: disk full \(in node main/branch/work(#\d)?\)", proc.stderr)
    (path,) = list(layout.iter_logs())
    finished = events_of(path)[-1]
    assert finished.error.type == "RuntimeError"
    assert 'raise RuntimeError("disk full")' in finished.error.traceback
    shown = ag("show", path.stem, cwd=tmp_path)
    assert re.search(r"error RuntimeError: disk full \(in node main/branch/work", shown.stdout)
    assert "Traceback" not in shown.stdout
    traced = ag("show", path.stem, "--trace", cwd=tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert 'raise RuntimeError("disk full")' in traced.stdout and str(script) in traced.stdout


# -- cancelling one node of a fan-out ----------------------------------------------------------


def _fan_out(catch: bool):
    import trio

    from aethergraph import NodeCancelled, graph_fn, tool

    @tool()
    async def child_job(i: int, *, context):
        await context.sleep(60)
        return i

    @graph_fn(name="fan")
    async def fan(*, context):
        results = {}

        async def one(i):
            if not catch:
                results[i] = (await child_job(i=i))["result"]
                return
            try:
                results[i] = (await child_job(i=i))["result"]
            except NodeCancelled as exc:
                results[i] = f"cancelled: {exc.reason}"

        async with trio.open_nursery() as n:
            for i in range(50):
                n.start_soon(one, i)
        return {str(k): v for k, v in sorted(results.items())}

    return fan


async def _cancel_one(home, fan):
    import trio

    from .conftest import rt_open

    out = {}
    async with rt_open(home) as rt:
        async def run_it():
            out["outcome"] = await fan.start_run(rt, {})

        async with trio.open_nursery() as n:
            n.start_soon(run_it)
            await trio.testing.wait_all_tasks_blocked()
            (run,) = rt.runs.values()
            assert len([p for p in run.nodes if p.startswith("fan/child_job")]) == 50
            rt.cancel(run.run_id, "fan/child_job#5", reason="not needed", by="alice")
    return out["outcome"]


async def test_cancelled_node_caught_by_its_caller_leaves_its_49_siblings_running(home, layout, autojump_clock):
    outcome = await _cancel_one(home, _fan_out(catch=True))
    assert outcome.status == ev.SUCCEEDED, outcome.error
    cancelled = [k for k, v in outcome.outputs.items() if isinstance(v, str)]
    assert len(cancelled) == 1 and outcome.outputs[cancelled[0]] == "cancelled: not needed"
    assert sum(isinstance(v, int) for v in outcome.outputs.values()) == 49
    events = [e for e in events_of(layout.run_log(outcome.run_id))]
    assert [(e.node, e.by) for e in events if type(e) is ev.NodeCancelled] == [("fan/child_job#5", "alice")]
    assert sum(type(e) is ev.NodeFinished and e.node.startswith("fan/child_job") for e in events) == 49


async def test_uncaught_node_cancellation_cancels_its_siblings_and_the_run(home, layout, autojump_clock):
    from aethergraph import NodeCancelled

    outcome = await _cancel_one(home, _fan_out(catch=False))
    assert outcome.status == ev.CANCELLED
    assert isinstance(outcome.error, NodeCancelled)
    assert "child fan/child_job#5 cancelled: not needed" in str(outcome.error)
    events = events_of(layout.run_log(outcome.run_id))
    assert not [e for e in events if type(e) is ev.NodeFailed]
    cancelled = {e.node for e in events if type(e) is ev.NodeCancelled}
    assert len(cancelled) == 51  # the one, its 49 siblings, and the caller
    assert events[-1].status == ev.CANCELLED and events[-1].error.type == "NodeCancelled"


def test_ag_cancel_help_says_what_cancelling_a_node_does(tmp_path):
    text = " ".join(ag("cancel", "--help", cwd=tmp_path).stdout.split())
    assert "its caller gets NodeCancelled. If the caller catches it, the caller and its siblings go on." in text
    assert "the siblings are cancelled, the caller ends CANCELLED too, and at the top the run ends CANCELLED." in text


# -- one wake-up idiom in the sidecar ----------------------------------------------------------


async def test_two_snapshots_on_one_connection_both_finish(home, monkeypatch):
    """Two tasks of one connection wait for room in its outbox at once: both must wake."""
    import trio

    from aethergraph import graph_fn
    from aethergraph.runtime.sidecar import server as sidecar_server
    from aethergraph.runtime.sidecar.client import LIVE, SidecarClient, find_runtimes

    from .conftest import rt_open

    monkeypatch.setattr(sidecar_server, "OUTBOX_HIGH", 1)  # every frame waits for room
    monkeypatch.setattr(sidecar_server, "BATCH", 5)

    @graph_fn(name="many")
    async def many(*, context):
        for i in range(300):
            await context.memory().record("tick", {"i": i})
        return context.run_id

    async with rt_open(home, sidecar=True):
        run_id = await many()
        (advert,) = find_runtimes(str(home))
        counts = {}
        async with SidecarClient.connect(advert) as c:

            async def snapshot(name):
                n = 0
                async with c.subscribe(run_id, live_marker=True) as events:
                    async for e in events:
                        if e is LIVE:
                            break
                        n += 1
                counts[name] = n

            with trio.fail_after(10):  # a hang detector: a waiter that never wakes
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(snapshot, "a")
                    nursery.start_soon(snapshot, "b")
    assert counts == {"a": 304, "b": 304}


# -- logs written before keys ------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid

PIPELINE = textwrap.dedent(
    """
    import os
    from aethergraph import graph_fn, tool

    @tool()
    async def fetch(n: int):
        with open(os.environ["FETCH_LOG"], "a") as f:
            f.write(f"{n}\\n")
        return n * 10

    @graph_fn(name="pipeline")
    async def pipeline(*, context):
        return {"a": await fetch(1), "b": await fetch(2)}
    """
)


@pytest.mark.slow
def test_resume_of_a_run_logged_before_keys_replays_its_finished_tools(tmp_path, layout):
    """An interrupted run from an older version (steps were "<path>:<tool>:<hash>", graph
    functions had none) resumes without re-running what finished."""
    from aethergraph.runtime.history import HOST
    from aethergraph.runtime.journal import args_hash

    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    run_id = "20261201-120000-01d01d"
    path = layout.run_log(run_id)
    path.parent.mkdir(parents=True)
    old = [
        ev.RunStarted(run_id=run_id, graph="pipeline", entrypoint=f"{script}:pipeline",
                      pid=_dead_pid(), host=HOST),  # a process of this host that is gone
        ev.NodeStarted(run_id=run_id, node="pipeline", name="pipeline", kind="graph_fn"),
        ev.NodeStarted(run_id=run_id, node="pipeline/fetch", name="fetch", kind="tool", inputs={"n": 1},
                       parent="pipeline", step=f"pipeline/fetch:fetch:{args_hash({'n': 1})}"),
        ev.NodeFinished(run_id=run_id, node="pipeline/fetch", outputs={"result": 10}),
        ev.NodeStarted(run_id=run_id, node="pipeline/fetch#2", name="fetch", kind="tool", inputs={"n": 2},
                       parent="pipeline", step=f"pipeline/fetch#2:fetch:{args_hash({'n': 2})}"),
    ]
    for seq, e in enumerate(old, 1):
        e.seq, e.ts = seq, 1764590400.0 + seq
    path.write_bytes(b"".join(ev.encode(e) + b"\n" for e in old))
    fetch_log = tmp_path / "fetch.log"
    resumed = ag("resume", run_id, "--json", env={"FETCH_LOG": str(fetch_log)}, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["outputs"] == {"a": {"result": 10}, "b": {"result": 20}}
    assert fetch_log.read_text().split() == ["2"], "fetch(1) had finished: replayed, not run again"


# -- memory record ids ---------------------------------------------------------------------------


async def test_memory_ids_follow_the_content_recorded_not_the_form_of_the_arguments(home, layout):
    """Equal content, equal id (then counted as a second occurrence): a default given
    explicitly, a severity as text, tags as a list or a tuple. Other content, another id."""
    from aethergraph import graph_fn

    from .conftest import rt_open

    @graph_fn(name="g")
    async def g(*, context):
        m = context.memory()
        ids = [
            (await m.record("k", {"x": 1})).event_id,
            (await m.record("k", {"x": 1}, severity="2", tags=[], stage="")).event_id,
            (await m.record("k", {"x": 1}, tags=["t"])).event_id,
            (await m.record("k", {"x": 1}, tags=("t",))).event_id,
            (await m.record("k", {"x": 2})).event_id,
            (await m.record("k", {"x": 1}, severity=3)).event_id,
        ]
        return {"ids": ids}

    async with rt_open(home):
        ids = (await g())["ids"]
    plain, tagged, other, graver = ids[0], ids[2], ids[4], ids[5]
    assert ids[1] == plain + "-2"
    assert ids[3] == tagged + "-2"
    assert len({plain, tagged, other, graver}) == 4
