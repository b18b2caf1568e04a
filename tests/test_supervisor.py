"""Supervision: timeouts, retries, cancellation, Ctrl-C, services' background tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import trio
import trio.testing

from aethergraph import (
    Failed,
    NodeCancelled,
    NodeContext,
    NodeTimeout,
    PollTimeout,
    RetryPolicy,
    Service,
    graph_fn,
    poll_until,
    register_context_service,
    tool,
)
from aethergraph.runtime import events as ev

from .conftest import rt_open, ag, event_types, run_events
from .jobs_support import run_while



def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


# -- timeouts ----------------------------------------------------------------------------------


async def test_graph_fn_timeout_is_timed_out_not_failed(home, layout, autojump_clock):
    @graph_fn(name="slow", timeout_s=5)
    async def slow(*, context: NodeContext):
        await trio.sleep(100)

    async with rt_open(home) as rt:
        t0 = trio.current_time()
        outcome = await slow.start_run(rt, {})
        elapsed = trio.current_time() - t0
    assert outcome.status == ev.TIMED_OUT
    assert isinstance(outcome.error, NodeTimeout)
    assert 5 <= elapsed < 6
    events = run_events(layout, outcome.run_id)
    timed_out = of(events, ev.NodeTimedOut)
    assert [(e.node, e.timeout_s) for e in timed_out] == [("slow", 5.0)]
    assert not of(events, ev.NodeFailed)
    assert events[-1].status == ev.TIMED_OUT


async def test_tool_timeout_raises_to_caller_which_can_handle_it(home, layout, autojump_clock):
    @tool(timeout_s=1)
    async def stuck():
        await trio.sleep_forever()

    @graph_fn(name="caller")
    async def caller(*, context):
        try:
            await stuck()
        except NodeTimeout as exc:
            return {"handled": exc.path}

    async with rt_open(home) as rt:
        outcome = await caller.start_run(rt, {})
    assert outcome.outputs == {"handled": "caller/stuck"}
    assert outcome.status == ev.SUCCEEDED


# -- retries -----------------------------------------------------------------------------------


async def test_tool_retries_with_backoff_then_succeeds(home, layout, autojump_clock):
    calls = []

    @tool(retries=3, outputs=["value"])
    async def flaky(x: int):
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return x * 2

    @graph_fn(name="g")
    async def g(*, context):
        return await flaky(21)

    async with rt_open(home) as rt:
        outcome = await g.start_run(rt, {})
    assert outcome.outputs == {"value": 42}
    events = run_events(layout, outcome.run_id)
    retried = of(events, ev.AttemptRetried)
    assert [r.attempt for r in retried] == [1, 2]
    assert [r.error.message for r in retried] == ["try 1", "try 2"]
    # exponential backoff with jitter: first delay in [0.5, 1], second in [1, 2]
    assert 0.5 <= retried[0].delay_s <= 1.0 and 1.0 <= retried[1].delay_s <= 2.0
    assert calls[1] - calls[0] == pytest.approx(retried[0].delay_s, abs=1e-3)  # timer: 1 ms resolution
    finished = [e for e in of(events, ev.NodeFinished) if e.node == "g/flaky"]
    assert finished[0].attempt == 3


async def test_tool_retries_exhausted_fails_with_original_error(home, layout, autojump_clock):
    @tool(retry=RetryPolicy(max_attempts=2, backoff_first=0.1))
    def always_fails():
        raise ValueError("nope")

    @graph_fn(name="g")
    async def g(*, context):
        await always_fails()

    async with rt_open(home) as rt:
        outcome = await g.start_run(rt, {})
    assert outcome.status == ev.FAILED
    assert isinstance(outcome.error, ValueError)
    events = run_events(layout, outcome.run_id)
    failed = of(events, ev.NodeFailed)
    assert [(f.node, f.attempt, f.error.type) for f in failed] == [("g/always_fails", 2, "ValueError"), ("g", 1, "ValueError")]


async def test_retry_on_limits_which_errors_retry(home, autojump_clock):
    attempts = 0

    @tool(retry=RetryPolicy(max_attempts=5, retry_on=(ConnectionError,)))
    async def picky():
        nonlocal attempts
        attempts += 1
        raise KeyError("not retried")

    with pytest.raises(KeyError):
        async with rt_open(home):
            await picky()
    assert attempts == 1


async def test_timed_out_attempts_are_retried(home, layout, autojump_clock):
    attempts = 0

    @tool(timeout_s=1, retries=1)
    async def sometimes_stuck():
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await trio.sleep_forever()
        return "ok"

    @graph_fn(name="g")
    async def g(*, context):
        return await sometimes_stuck()

    async with rt_open(home) as rt:
        outcome = await g.start_run(rt, {})
    assert outcome.outputs == {"result": "ok"}
    types = event_types(run_events(layout, outcome.run_id))
    assert types.count("node_timed_out") == 1 and types.count("attempt_retried") == 1


# -- cancellation and retry from outside --------------------------------------------------------


async def run_then(rt, graph, act):
    """Run ``graph``; once every task is blocked (the run is parked in its node), ``act(run_id)``
    from outside; the run's outcome."""

    async def when_parked():
        await trio.testing.wait_all_tasks_blocked()
        (run_id,) = rt.runs
        act(run_id)

    return await run_while(rt, graph, when_parked)


async def test_cancel_running_node_from_outside(home, layout, autojump_clock):
    @tool()
    async def stuck_poll():
        await trio.sleep_forever()

    @graph_fn(name="g")
    async def g(*, context):
        await stuck_poll()

    async with rt_open(home) as rt:
        def cancel_it(run_id):
            assert "g/stuck_poll" in rt.runs[run_id].nodes
            rt.cancel(run_id, "g/stuck_poll", reason="stuck for hours", by="alice")

        outcome = await run_then(rt, g, cancel_it)
    assert outcome.status == ev.CANCELLED
    assert isinstance(outcome.error, NodeCancelled)
    events = run_events(layout, outcome.run_id)
    cancelled = of(events, ev.NodeCancelled)
    assert [(c.node, c.by) for c in cancelled] == [("g/stuck_poll", "alice"), ("g", "alice")]
    assert cancelled[0].reason == "stuck for hours"
    assert "child g/stuck_poll cancelled" in cancelled[1].reason
    assert not of(events, ev.NodeFailed)
    assert events[-1].status == ev.CANCELLED


async def test_cancelled_child_can_be_handled_by_parent(home, autojump_clock):
    @tool()
    async def stuck():
        await trio.sleep_forever()

    @graph_fn(name="g")
    async def g(*, context):
        try:
            await stuck()
        except NodeCancelled as exc:
            return {"gave_up_on": exc.path}

    async with rt_open(home) as rt:
        outcome = await run_then(rt, g, lambda run_id: rt.cancel(run_id, "g/stuck", by="bob"))
    assert outcome.status == ev.SUCCEEDED
    assert outcome.outputs == {"gave_up_on": "g/stuck"}


async def test_cancel_whole_run(home, layout, autojump_clock):
    @graph_fn(name="g")
    async def g(*, context):
        await context.sleep(1000)

    async with rt_open(home) as rt:
        outcome = await run_then(rt, g, lambda run_id: rt.cancel(run_id, reason="not needed", by="carol"))
    events = run_events(layout, outcome.run_id)
    assert outcome.status == ev.CANCELLED
    (c,) = of(events, ev.NodeCancelled)
    assert c.reason == "run cancelled: not needed" and c.by == "carol"


async def test_retry_running_node_starts_next_attempt(home, layout, autojump_clock):
    attempts = []

    @tool()
    async def poll_job():
        attempts.append(1)
        if len(attempts) == 1:
            await trio.sleep_forever()  # stuck poll
        return "done"

    @graph_fn(name="g")
    async def g(*, context):
        return await poll_job()

    async with rt_open(home) as rt:
        outcome = await run_then(rt, g, lambda run_id: rt.retry(run_id, "g/poll_job", by="dave"))
    assert outcome.outputs == {"result": "done"}
    events = run_events(layout, outcome.run_id)
    (r,) = of(events, ev.AttemptRetried)
    assert (r.node, r.attempt, r.requested_by) == ("g/poll_job", 1, "dave")
    assert not of(events, ev.NodeCancelled)


async def test_keyboard_interrupt_in_node_records_cancelled_and_propagates(home, layout):
    @graph_fn(name="g")
    async def g(*, context):
        await context.memory().record("before", {"x": 1})
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        async with rt_open(home):
            await g()
    (log_path,) = list(layout.iter_logs())
    events = run_events(layout, log_path.stem)
    assert [e.kind for e in of(events, ev.MemoryRecorded)] == ["before"]
    assert of(events, ev.NodeCancelled)[0].reason == "interrupted (KeyboardInterrupt)"
    assert events[-1].status == ev.CANCELLED


BLOCKING_SCRIPT = textwrap.dedent(
    """
    import trio
    from aethergraph import graph_fn

    @graph_fn(name="forever")
    async def forever(*, context):
        await context.memory().record("started", {"ok": True})
        await context.channel().send_text("READY")
        await trio.sleep_forever()
    """
)


@pytest.mark.slow
def test_ctrl_c_cancels_run_cleanly(tmp_path, home, layout):
    script = tmp_path / "blocking.py"
    script.write_text(BLOCKING_SCRIPT)
    exe = os.path.join(os.path.dirname(sys.executable), "ag")
    proc = subprocess.Popen(
        [exe, "run", f"{script}:forever"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, cwd=tmp_path,
    )
    line = proc.stdout.readline()
    assert line.strip() == "READY"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "cancelled" in err
    (log_path,) = list(layout.iter_logs())
    events = run_events(layout, log_path.stem)
    assert events[-1].status == ev.CANCELLED
    (c,) = of(events, ev.NodeCancelled)
    assert c.reason == "run cancelled: interrupted (Ctrl-C)" and c.by == "signal"
    assert [e.kind for e in of(events, ev.MemoryRecorded)] == ["started"]
    assert not of(events, ev.NodeFailed)
    runs = ag("runs", "--json", cwd=tmp_path)
    assert '"status":"cancelled"' in runs.stdout


# -- services ----------------------------------------------------------------------------------


async def test_service_background_task_cancelled_on_shutdown(home, autojump_clock):
    state = {"ticks": 0, "cancelled": False, "closed": False, "started": False}

    class Ticker(Service):
        async def start(self):
            state["started"] = True

        async def begin(self):
            self.spawn(self._tick)

        async def _tick(self):
            try:
                while True:
                    await trio.sleep(1)
                    state["ticks"] += 1
            except trio.Cancelled:
                state["cancelled"] = True
                raise

        async def close(self):
            state["closed"] = True

    register_context_service("ticker", Ticker())

    @graph_fn(name="g")
    async def g(*, context):
        await context.ticker().begin()
        await trio.sleep(5.5)

    async with rt_open(home):
        await g()
        assert not state["cancelled"]  # still running while the runtime is open
    assert state == {"ticks": 5, "cancelled": True, "closed": True, "started": True}


async def test_unknown_service_names_the_registered_ones(home):
    register_context_service("jobs", object())

    @graph_fn(name="g")
    async def g(*, context):
        context.nope()

    with pytest.raises(AttributeError, match="registered services: jobs"):
        async with rt_open(home):
            await g()


# -- polling -----------------------------------------------------------------------------------


async def test_poll_loop_with_deadline(home, autojump_clock):
    @graph_fn(name="g")
    async def g(*, context):
        n = 0
        async for n in context.poll(2, timeout_s=7):
            pass

    with pytest.raises(PollTimeout, match=r"no result within 7s \(4 polls\)"):
        async with rt_open(home):
            await g()


async def test_poll_until_returns_first_done_result(home, autojump_clock):
    seen = []

    async def check():
        seen.append(trio.current_time())
        return len(seen) if len(seen) >= 3 else 0

    async with rt_open(home):
        t0 = trio.current_time()
        assert await poll_until(check, interval_s=0.5, timeout_s=10) == 3
        assert trio.current_time() - t0 == pytest.approx(1.0)


# -- node tree and results ---------------------------------------------------------------------


async def test_child_paths_and_tool_normalisation(home, layout):
    @tool()
    def nothing():
        return None

    @tool()
    def pair():
        return 1, 2

    @tool(outputs=["a", "b"])
    async def named():
        return 1, 2

    @tool()
    def scalar():
        return 7

    @graph_fn(name="child", outputs=["y"])
    async def child(x, *, context):
        return x + 1

    @graph_fn(name="root")
    async def root(*, context):
        results = [await nothing(), await pair(), await named(), await scalar(), await scalar()]
        results.append(await child(1, context=context))
        results.append(await child(x=2))  # implicit: still a child of this node
        return results

    async with rt_open(home) as rt:
        outcome = await root.start_run(rt, {})
    assert outcome.outputs == [{}, {"out0": 1, "out1": 2}, {"a": 1, "b": 2}, {"result": 7}, {"result": 7}, {"y": 2}, {"y": 3}]
    starts = [(e.node, e.parent) for e in of(run_events(layout, outcome.run_id), ev.NodeStarted)]
    assert starts == [
        ("root", ""), ("root/nothing", "root"), ("root/pair", "root"), ("root/named", "root"),
        ("root/scalar", "root"), ("root/scalar#2", "root"), ("root/child", "root"),
        ("root/child#2", "root"),
    ]


async def test_failed_result_ends_node_failed_but_keeps_outputs(home, layout):
    @graph_fn(name="g")
    async def g(*, context):
        return Failed("job failed", outputs={"status": "failed"})

    async with rt_open(home):
        out = await g()
    assert out == {"status": "failed"}
    (log_path,) = list(layout.iter_logs())
    events = run_events(layout, log_path.stem)
    (f,) = of(events, ev.NodeFailed)
    assert f.outputs == {"status": "failed"} and f.error.message == "job failed"
    assert events[-1].status == ev.FAILED and events[-1].outputs == {"status": "failed"}


async def test_error_in_node_reaches_caller_unwrapped(home):
    @graph_fn(name="g")
    async def g(*, context):
        raise ValueError("plain error")

    with pytest.raises(ValueError, match="plain error"):
        await g()


def test_sync_entry_points(home):
    @graph_fn(name="add", outputs=["sum"])
    async def add(a, b, *, context):
        return a + b

    import aethergraph

    assert aethergraph.run(add, a=1, b=2) == {"sum": 3}
    assert add.sync(a=2, b=3) == {"sum": 5}


def test_top_level_call_without_runtime_opens_one(home, layout):
    @graph_fn(name="solo")
    async def solo(*, context):
        await context.memory().record("hello", {"n": 1})
        return context.run_id

    run_id = trio.run(solo)
    assert layout.run_log(run_id).is_file()
    assert event_types(run_events(layout, run_id))[-1] == "run_finished"


async def test_runtime_cancelled_from_outside_still_records_how_runs_ended(home, layout):
    @graph_fn(name="long")
    async def long(*, context):
        await context.memory().record("started", {})
        await trio.sleep_forever()

    with trio.CancelScope() as outside:
        async with rt_open(home):
            async with trio.open_nursery() as n:
                n.start_soon(long)
                await trio.testing.wait_all_tasks_blocked()
                outside.cancel()  # everything at once: runs, writer, timer
    (path,) = list(layout.iter_logs())
    events = run_events(layout, path.stem)
    assert event_types(events)[-1] == "run_finished"
    assert events[-1].status == ev.CANCELLED
