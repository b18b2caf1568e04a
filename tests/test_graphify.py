"""@graphify: static DAGs built from tool calls, run with a concurrency limit, resumed by node id."""

from __future__ import annotations

import json
import re
import signal

import pytest
import trio

from aethergraph import graph_fn, graphify, tool
from aethergraph.static_graph import GraphBuildError
from aethergraph.runtime import events as ev
from aethergraph.runtime.store.logfile import read_events

from .conftest import ag, rt_open


class Gauge:
    """How many tool bodies run at once, measured inside the tools."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.order: list[str] = []

    async def work(self, name: str) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        self.order.append(f"start {name}")
        for _ in range(10):  # yield often: any node the limit let through would start meanwhile
            await trio.lowlevel.checkpoint()
        self.order.append(f"end {name}")
        self.now -= 1


def make_graphs(gauge: Gauge):
    @tool(outputs=["y"])
    async def step(x, name):
        await gauge.work(name)
        return x + 1

    @tool(outputs=["y"])
    async def join(xs, name):
        await gauge.work(name)
        return sum(xs)

    @graphify(name="diamond", outputs=["out"])
    def diamond(x):
        a = step(x=x, name="a", _id="a")
        b = step(x=a.y, name="b", _id="b")
        c = step(x=a.y, name="c", _id="c")
        d = step(x=a.y, name="d", _id="d")
        return {"out": join(xs=[b.y, c.y, d.y], name="e", _id="e").y}

    @graphify(name="wide", outputs=["out"])
    def wide(x):
        leaves = [step(x=x, name=f"w{i}", _id=f"w{i}") for i in range(8)]
        return {"out": join(xs=[h.y for h in leaves], name="sum", _id="sum").y}

    return diamond, wide


@pytest.mark.parametrize("shape", ["diamond", "wide"])
async def test_max_concurrency_2_never_runs_more_than_2_nodes(home, shape):
    gauge = Gauge()
    diamond, wide = make_graphs(gauge)
    graph = {"diamond": diamond, "wide": wide}[shape]
    async with rt_open(home):
        out = await graph(x=1, max_concurrency=2)
    assert out == {"out": 9 if shape == "diamond" else 16}
    assert gauge.most == 2, gauge.order  # never more, and the limit is actually used

    gauge2 = Gauge()
    _, wide_unlimited = make_graphs(gauge2)
    async with rt_open(home):
        await wide_unlimited(x=1)
    assert gauge2.most == 8  # without a limit the 8 independent nodes run together


async def test_after_orders_nodes_without_data(home):
    seen: list[str] = []

    @tool(outputs=["ok"])
    async def mark(name):
        seen.append(f"start {name}")
        for _ in range(5):
            await trio.lowlevel.checkpoint()
        seen.append(f"end {name}")
        return True

    @graphify(name="ordered")
    def ordered():
        first = mark(name="init", _id="init")
        mark(name="free", _id="free")  # no edge: runs alongside init
        mark(name="train", _id="train", _after=first)
        mark(name="report", _id="report", _after=["train", "free"])

    assert ordered.build().edges == [("init", "train", "after"), ("train", "report", "after"),
                                     ("free", "report", "after")]
    async with rt_open(home):
        assert await ordered() == {}
    assert seen.index("end init") < seen.index("start train")
    assert seen.index("end train") < seen.index("start report")
    assert seen.index("end free") < seen.index("start report")
    assert seen.index("start free") < seen.index("end init")  # independent: ran concurrently


async def test_nodes_are_keyed_and_named_by_id(home, layout):
    @tool(outputs=["y"])
    def inc(x):
        return x + 1

    @graphify(name="ids", outputs=["out"])
    def ids(x):
        a = inc(x=x)  # default id: the tool's name
        b = inc(x=a, _id="second")  # a handle of a one-output tool stands for that output
        return {"out": inc(x=b.y).y}  # default id of the next call of inc: inc_2

    async with rt_open(home) as rt:
        outcome = await ids.start_run(rt, {"x": 1})
    assert outcome.ok and outcome.outputs == {"out": 4}
    started = [e for e in read_events(layout.run_log(outcome.run_id)) if isinstance(e, ev.NodeStarted)]
    assert [(e.node, e.step) for e in started[1:]] == [
        ("ids/inc", "ids/@inc"), ("ids/second", "ids/@second"), ("ids/inc_2", "ids/@inc_2")]
    (planned,) = [e for e in read_events(layout.run_log(outcome.run_id)) if isinstance(e, ev.GraphPlanned)]
    assert [(n.id, n.deps) for n in planned.nodes] == [("inc", []), ("second", ["inc"]), ("inc_2", ["second"])]


def failing_graph(log: list[str]):
    @tool(outputs=["y"])
    async def ok(x, name):
        for _ in range(20):
            await trio.lowlevel.checkpoint()
        log.append(name)
        return x

    @tool(outputs=["y"])
    async def boom(x):
        for _ in range(5):  # fails while "independent" runs
            await trio.lowlevel.checkpoint()
        raise ValueError(f"bad value {x}")

    def body(x):
        bad = boom(x=x, _id="bad")
        after_bad = ok(x=bad.y, name="after_bad", _id="after_bad")
        ok(x=after_bad.y, name="later", _id="later")
        slow = ok(x=x, name="independent", _id="independent")
        ok(x=slow.y, name="independent_next", _id="independent_next")

    return body


@pytest.mark.parametrize("policy", ["stop", "continue"])
async def test_a_failed_node_fails_its_dependants_and_the_policy_decides_the_rest(home, layout, policy):
    ran: list[str] = []
    graph = graphify(name="failing", on_error=policy)(failing_graph(ran))
    async with rt_open(home) as rt:
        outcome = await graph.start_run(rt, {"x": 1})
    assert outcome.status == ev.FAILED
    assert isinstance(outcome.error, ValueError)  # the node's own error, not a group
    assert outcome.error_info.message == "bad value 1 (in node failing/bad)"
    events = read_events(layout.run_log(outcome.run_id))
    started = {e.node for e in events if isinstance(e, ev.NodeStarted)}
    assert "failing/after_bad" not in started and "failing/later" not in started
    if policy == "continue":
        assert ran == ["independent", "independent_next"]
        finished = {e.node for e in events if isinstance(e, ev.NodeFinished)}
        assert {"failing/independent", "failing/independent_next"} <= finished
    else:
        assert ran == []
        cancelled = [e for e in events if isinstance(e, ev.NodeCancelled)]
        assert [e.node for e in cancelled] == ["failing/independent"]
        assert cancelled[0].reason == "node bad failed: the graph stops (on_error='stop')"


def test_build_errors_name_the_problem():
    @tool(outputs=["y"])
    def inc(x):
        return x + 1

    def dup(x):
        inc(x=x, _id="a")
        inc(x=x, _id="a")

    def slash(x):
        inc(x=x, _id="a/b")

    def unknown_output(x):
        inc(x=x).z

    def branch(x):
        if inc(x=x):
            pass

    for body, message in [
        (dup, "_id='a' is used twice"),
        (slash, "no '/'"),
        (unknown_output, "has no output 'z' (declared: y)"),
        (branch, "cannot branch on it"),
    ]:
        with pytest.raises(GraphBuildError, match=re.escape(message)):
            graphify(body).build()
    with pytest.raises(TypeError, match="inside a @graphify body"):
        inc(x=1, _after=["a"])


GRAPH_FILE = """
import os
from aethergraph import graph_fn, graphify, tool

RAN = os.environ["RAN_FILE"]

@tool(outputs=["y"])
def step(x, name):
    with open(RAN, "a") as f:  # what really ran, in whichever process
        f.write(name + "\\n")
    return x + 1

@graphify(name="pipeline", outputs=["out"])
def pipeline(x):
    a = step(x=x, name="a", _id="a")
    b = step(x=a.y, name="b", _id="b")
    c = step(x=a.y, name="c", _id="c")
    d = step(x=b.y, name="d", _id="d", _after=[c])
    e = step(x=d.y, name="e", _id="e")
    return {"out": e.y}
"""


def test_ag_graph_prints_nodes_edges_and_ids(tmp_path):
    (tmp_path / "pipe.py").write_text(GRAPH_FILE)
    out = ag("graph", "pipe.py:pipeline", cwd=tmp_path, env={"RAN_FILE": str(tmp_path / "ran")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "graph pipeline: 5 nodes, 5 edges; inputs: x",
        "  a  tool step  [inputs: x]",
        "  b  tool step  <- a",
        "  c  tool step  <- a",
        "  d  tool step  <- b, c (after)",
        "  e  tool step  <- d",
    ]
    assert not (tmp_path / "ran").exists()  # building runs no tool
    as_json = json.loads(ag("graph", "pipe.py:pipeline", "--json", cwd=tmp_path,
                            env={"RAN_FILE": str(tmp_path / "ran")}).stdout)
    assert {"from": "c", "to": "d", "kind": "after"} in as_json["edges"]
    not_static = ag("graph", "pipe.py:step", cwd=tmp_path, env={"RAN_FILE": "x"})
    assert not_static.returncode == 2 and "only @graphify graphs do" in not_static.stderr


@pytest.mark.slow
def test_kill_9_mid_dag_then_resume_reruns_only_unfinished_nodes(tmp_path, layout):
    (tmp_path / "pipe.py").write_text(GRAPH_FILE)
    ran = tmp_path / "ran"
    env = {"RAN_FILE": str(ran), "AETHERGRAPH_DURABILITY": "strict"}
    crashed = ag("run", "pipe.py:pipeline", "--input", '{"x": 0}', "--max-concurrency", "2",
                 env={**env, "AETHERGRAPH_FAULT": "kill:node_started:pipeline/d"}, cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert sorted(ran.read_text().split()) == ["a", "b", "c"]
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "interrupted"

    resumed = ag("resume", run["run_id"], "--json", env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["outputs"] == {"out": 4}
    assert sorted(ran.read_text().split()) == ["a", "b", "c", "d", "e"]  # each ran once in all
    events = read_events(layout.run_log(run["run_id"]))
    after = events[next(i for i, e in enumerate(events) if isinstance(e, ev.RunResumed)):]
    assert [e.node for e in after if isinstance(e, ev.NodeStarted)] == ["pipeline", "pipeline/d", "pipeline/e"]


async def test_graph_inputs_defaults_and_upstream_run_shape(home):
    import aethergraph

    @tool(outputs=["y"])
    def scale(x, k):
        return x * k

    @graphify(name="scaled", outputs=["out"])
    def scaled(x, k=3):
        return scale(x=x, k=k)

    async with rt_open(home):
        assert await scaled(x=2) == {"out": 6}
        assert await aethergraph.run_async(scaled, inputs={"x": 2, "k": 5}, max_concurrency=1) == {"out": 10}
        bound = scaled(x=1)  # builds, runs nothing
        assert list(bound.nodes) == ["scale"]
        with pytest.raises(TypeError, match="missing inputs: x"):
            await scaled()


def test_dashboard_dag_view_shows_each_planned_node_with_its_state(home, layout):
    from textual.app import App

    from aethergraph.runtime.history import summarize
    from aethergraph.tui.widgets.dag import DagView

    from .test_tui_support import drive

    ran: list[str] = []
    graph = graphify(name="failing", on_error="continue", max_concurrency=2)(failing_graph(ran))

    async def run_it():
        async with rt_open(home) as rt:
            return await graph.start_run(rt, {"x": 1})

    outcome = trio.run(run_it)
    events = read_events(layout.run_log(outcome.run_id))
    summary = summarize(outcome.run_id, events)
    planned = {e.node: e for e in events if isinstance(e, ev.GraphPlanned)}

    class One(App):
        def compose(self):
            yield DagView(id="dag")

    lines: list[str] = []

    async def scenario(pilot):
        view = pilot.app.query_one(DagView)
        view.sync(planned, summary.nodes, summary.status)
        await pilot.pause()
        lines.extend(line.rstrip() for line in str(view.render()).splitlines())

    drive(One(), scenario)
    assert lines == [
        "graph failing: 5 nodes, at most 2 at once",
        "✗ bad               failed     tool boom",
        "↷ after_bad         skipped    tool ok  <- bad  [bad failed]",
        "↷ later             skipped    tool ok  <- after_bad  [after_bad skipped]",
        "✓ independent       succeeded  tool ok",
        "✓ independent_next  succeeded  tool ok  <- independent",
    ]


def test_run_detail_D_shows_the_dag_and_ag_show_lists_the_planned_ids(home, layout):
    """The DAG tab wired into run detail: D on a static run shows every planned node with its
    state (the skipped ones too); ``ag show`` describes the ``graph_planned`` line by its ids."""
    from textual.widgets import TabbedContent

    from aethergraph.tui.app import AetherGraphApp
    from aethergraph.tui.widgets.dag import DagView

    from .test_tui_support import drive, until

    graph = graphify(name="failing", on_error="continue", max_concurrency=2)(failing_graph([]))

    async def run_it():
        async with rt_open(home) as rt:
            return await graph.start_run(rt, {"x": 1})

    run_id = trio.run(run_it).run_id
    app = AetherGraphApp(home)
    shown: list[str] = []

    async def scenario(pilot):
        await until(pilot, lambda: run_id in app.state.runs, "the run in the list")
        app.open_run(run_id)
        await until(pilot, lambda: app.detail is not None and app.detail.loaded, "the run's log")
        await pilot.press("D")
        assert app.screen.query_one("#run-tabs", TabbedContent).active == "dag"
        view = app.screen.query_one(DagView)
        await until(pilot, lambda: "graph failing" in str(view.render()), "the DAG drawn")
        shown.extend(line.rstrip() for line in str(view.render()).splitlines())

    drive(app, scenario, size=(120, 30))
    assert shown[0] == "graph failing: 5 nodes, at most 2 at once"
    assert "↷ later             skipped    tool ok  <- after_bad  [after_bad skipped]" in shown
    out = ag("show", run_id)
    assert out.returncode == 0, out.stderr
    (line,) = [ln for ln in out.stdout.splitlines() if "graph_planned" in ln]
    assert line.endswith("5 nodes: bad, after_bad, later, independent, independent_next"), line


async def test_a_graphify_graph_is_a_node_of_another_and_of_a_map(home, layout):
    @tool(outputs=["y"])
    def double(x):
        return 2 * x

    @graphify(name="twice", outputs=["y"])
    def twice(x):
        return double(x=double(x=x, _id="first"), _id="second")

    @graphify(name="outer", outputs=["z"])
    def outer(x):
        inner = twice(x=x, _id="inner")
        return {"z": double(x=inner.y, _id="last").y}

    @graph_fn(name="fan")
    async def fan(xs, *, context):
        return [r["y"] for r in await context.map(twice, xs, on_error="raise")]

    async with rt_open(home) as rt:
        nested = await outer.start_run(rt, {"x": 1})
        mapped = await fan.start_run(rt, {"xs": [1, 2, 3]})
    assert nested.outputs == {"z": 8} and mapped.outputs == [4, 8, 12]
    steps = [e.step for e in read_events(layout.run_log(nested.run_id)) if isinstance(e, ev.NodeStarted)]
    assert steps == ["outer", "outer/@inner", "outer/@inner/@first", "outer/@inner/@second", "outer/@last"]


def test_dag_view_shows_a_hostile_plan_as_inert_text():
    """A graph_planned is read from a log (untrusted): its ids, names and graph path are shown
    with their control characters made visible, never sent to the terminal."""
    from aethergraph.runtime.textsafe import HOSTILE
    from aethergraph.tui.widgets.dag import render

    h = "".join(HOSTILE)
    planned = ev.GraphPlanned(run_id="r", node="g" + h, ts=1.0, seq=1, nodes=[
        ev.DagNode(id="a" + h, name="n" + h), ev.DagNode(id="b", name="ok", deps=["a" + h])])
    text = render(planned, {}, ev.RUNNING).plain
    assert not any(ch in text for ch in "\x1b\x07\x9b\r\u202e"), repr(text)
    assert "␛" in text and text.count("\n") == 3  # a header and two rows: no line broken in two
