"""context.map: a fan-out that keeps input order, respects its limit, and does not fall over."""

from __future__ import annotations

import pytest
import trio

from aethergraph import NodeCancelled, graph_fn, tool
from aethergraph.runtime import events as ev
from aethergraph.runtime.engine import current_runtime
from aethergraph.runtime.store.logfile import read_events

from .conftest import in_background, rt_open


def make_work(gauge: dict):
    @tool(outputs=["y"])
    async def work(x, *, context):
        gauge["now"] += 1
        gauge["most"] = max(gauge["most"], gauge["now"])
        try:
            # Later items finish first: the results must still come back in input order.
            for _ in range(20 - x):
                await trio.lowlevel.checkpoint()
            if x == 3:
                raise ValueError(f"item {x} is bad")
            if x == 5:
                current_runtime.get().cancel(context.run_id, context.node_id, reason="not this one", by="test")
                await trio.sleep_forever()
            return x * 10
        finally:
            gauge["now"] -= 1

    return work


async def test_collect_keeps_order_and_puts_errors_in_their_slots(home, layout):
    gauge = {"now": 0, "most": 0}
    work = make_work(gauge)

    @graph_fn(name="fan")
    async def fan(n, *, context):
        return {"results": await context.map(work, range(n), max_concurrency=3)}

    async with rt_open(home) as rt:
        outcome = await fan.start_run(rt, {"n": 8})
    assert outcome.ok, outcome.error
    results = outcome.outputs["results"]
    assert [r["y"] if isinstance(r, dict) else type(r).__name__ for r in results] == [
        0, 10, 20, "ValueError", 40, "NodeCancelled", 60, 70]
    assert str(results[3]) == "item 3 is bad"
    assert results[5].reason == "not this one"
    assert gauge["most"] == 3
    events = read_events(layout.run_log(outcome.run_id))
    children = [e for e in events if isinstance(e, ev.NodeStarted) and e.parent == "fan"]
    assert len(children) == 8  # each item its own node
    failed = [e.node for e in events if isinstance(e, ev.NodeFailed)]
    cancelled = [e.node for e in events if isinstance(e, ev.NodeCancelled)]
    assert len(failed) == 1 and len(cancelled) == 1


async def test_raise_raises_the_first_error_as_itself_and_stops_the_rest(home, layout):
    gauge = {"now": 0, "most": 0}
    work = make_work(gauge)

    @graph_fn(name="fan")
    async def fan(n, *, context):
        try:
            await context.map(work, range(n), max_concurrency=2, on_error="raise")
        except ValueError as exc:  # not an ExceptionGroup
            return {"caught": str(exc)}
        return {"caught": None}

    async with rt_open(home) as rt:
        outcome = await fan.start_run(rt, {"n": 8})
    assert outcome.outputs == {"caught": "item 3 is bad"}
    events = read_events(layout.run_log(outcome.run_id))
    started = [e.inputs["x"] for e in events if isinstance(e, ev.NodeStarted) and e.parent == "fan"]
    # Items start in input order and nothing starts after the failure: 5.. never did.
    assert 3 in started and sorted(started) == list(range(len(started))) and len(started) <= 5
    assert gauge["now"] == 0


async def test_uncaught_raise_fails_the_run_with_the_leaf_error(home):
    @tool
    def half(x):
        if x % 2:
            raise ValueError(f"odd {x}")
        return x // 2

    @graph_fn(name="halves")
    async def halves(xs, *, context):
        return await context.map(half, xs, on_error="raise")

    async with rt_open(home) as rt:
        outcome = await halves.start_run(rt, {"xs": [2, 4, 5]})
    assert outcome.status == ev.FAILED and isinstance(outcome.error, ValueError)
    assert outcome.error_info.type == "ValueError" and outcome.error_info.message.startswith("odd 5 (in node halves/half")


async def test_spread_and_bad_arguments(home):
    @tool(outputs=["s"])
    def add(a, b):
        return a + b

    @graph_fn(name="adds")
    async def adds(*, context):
        out = await context.map(add, [{"a": 1, "b": 2}, {"a": 3, "b": 4}], spread=True)
        with pytest.raises(ValueError, match="on_error"):
            await context.map(add, [], on_error="ignore")
        with pytest.raises(TypeError, match="needs a @tool or @graph_fn"):
            await context.map(lambda x: x, [1])
        return [r["s"] for r in out]

    async with rt_open(home):
        assert await adds() == [3, 7]


async def test_cancelling_the_caller_is_not_collected(home):
    started = trio.Event()

    @tool
    async def forever(x):
        started.set()
        await trio.sleep_forever()

    @graph_fn(name="fan")
    async def fan(*, context):
        return await context.map(forever, [1, 2])

    async with rt_open(home) as rt:
        async with in_background(fan.start_run, rt, {}) as run:
            await started.wait()
            (run_id,) = rt.runs
            rt.cancel(run_id, reason="enough")
    assert run.outcome.status == ev.CANCELLED
    assert not isinstance(run.outcome.error, NodeCancelled) or run.outcome.error.reason == "enough"
