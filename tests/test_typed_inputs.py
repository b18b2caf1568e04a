"""Typed inputs: annotated parameters are structured from JSON with cattrs, logged as JSON, and a
bad input fails before the run starts with the path to the field."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import textwrap

import attrs
import pytest

from aethergraph import InputError, graph_fn, tool
from aethergraph.runtime import events as ev
from aethergraph.runtime.store.logfile import read_events

from .conftest import ag, rt_open

PLAN_FILE = textwrap.dedent("""
    import datetime
    import enum

    import attrs

    from aethergraph import graph_fn


    class Mode(enum.Enum):
        FAST = "fast"
        CAREFUL = "careful"


    @attrs.define
    class Stage:
        name: str
        retries: int = 0


    @attrs.define
    class Spec:
        steps: int
        mode: Mode
        stages: list[Stage]
        due: datetime.datetime | None = None


    @graph_fn(name="plan")
    async def plan(spec: Spec, note, *, context):
        assert isinstance(spec, Spec) and isinstance(spec.stages[0], Stage), spec
        assert isinstance(spec.mode, Mode)
        return {"summary": f"{spec.steps} steps, {spec.mode.value}, "
                           f"{'+'.join(s.name for s in spec.stages)}, due {spec.due:%Y-%m-%d}",
                "note": note}
""")

GOOD = {"spec": {"steps": 3, "mode": "careful", "due": "2026-12-24T09:00:00",
                 "stages": [{"name": "fetch"}, {"name": "train", "retries": 2}]},
        "note": {"free": ["form"]}}


def test_nested_attrs_inputs_from_the_cli_are_structured_and_logged_as_json(tmp_path, layout):
    (tmp_path / "plan.py").write_text(PLAN_FILE)
    out = ag("run", "plan.py:plan", "--input", json.dumps(GOOD), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    outcome = json.loads(out.stdout)
    assert outcome["outputs"] == {"summary": "3 steps, careful, fetch+train, due 2026-12-24",
                                  "note": {"free": ["form"]}}  # unannotated: as given
    (started,) = [e for e in read_events(layout.run_log(outcome["run_id"])) if isinstance(e, ev.RunStarted)]
    assert started.inputs["spec"] == {"steps": 3, "mode": "careful", "due": "2026-12-24T09:00:00",
                                      "stages": [{"name": "fetch", "retries": 0},
                                                 {"name": "train", "retries": 2}]}

    (tmp_path / "in.json").write_text(json.dumps(GOOD))
    from_file = ag("run", "plan.py:plan", "--input-file", "in.json", "--input", '{"note": 1}', "--json",
                   cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["outputs"]["note"] == 1  # --input keys override the file


@pytest.mark.parametrize(("spec", "message"), [
    ({"steps": "x"}, "spec.steps: expected int, got 'x'"),
    ({"stages": [{"name": "a"}, {"name": 7}]}, "spec.stages[1].name: expected str, got 7"),
    ({"mode": "slow"}, "spec.mode: expected Mode: 'slow' is not a valid Mode"),
    ({"due": "someday"}, "spec.due: expected datetime.datetime | None"),
    ({"stpes": 3}, "spec: unknown field 'stpes'"),
])
def test_a_bad_input_fails_before_the_run_naming_the_field(tmp_path, spec, message):
    (tmp_path / "plan.py").write_text(PLAN_FILE)
    bad = {**GOOD, "spec": {**GOOD["spec"], **spec}}
    out = ag("run", "plan.py:plan", "--input", json.dumps(bad), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("ag: inputs do not fit plan: ") and message in line, line
    runs = ag("runs", "--json", cwd=tmp_path)
    assert runs.returncode == 2 and "no store" in runs.stderr  # nothing ran: not even a store


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: float
    y: float


@attrs.frozen
class Shape:
    name: str
    points: list[Point]
    colors: dict[str, Color] = attrs.field(factory=dict)


async def test_python_objects_and_json_get_the_same_log_and_step_keys(home, layout):
    seen = []

    @tool(outputs=["n"])
    def count(shape: Shape, when: datetime.date):
        seen.append((shape, when))
        return len(shape.points)

    @graph_fn(name="outer")
    async def outer(*, context):
        a = await count(Shape("tri", [Point(0, 0), Point(1, 0), Point(0, 1)], {"fill": Color.RED}),
                        datetime.date(2026, 12, 1), context=context)
        b = await count({"name": "tri", "points": [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 0, "y": 1}],
                         "colors": {"fill": "red"}}, when="2026-12-01", context=context)
        return [a["n"], b["n"]]

    async with rt_open(home) as rt:
        outcome = await outer.start_run(rt, {})
    assert outcome.ok and outcome.outputs == [3, 3]
    assert seen[0] == seen[1] and isinstance(seen[1][0].points[0], Point)
    steps = [e for e in read_events(layout.run_log(outcome.run_id))
             if isinstance(e, ev.NodeStarted) and e.kind == "tool"]
    assert steps[0].inputs == steps[1].inputs
    assert steps[0].inputs["shape"]["colors"] == {"fill": "red"} and steps[0].inputs["when"] == "2026-12-01"
    # Identical calls by content: the second is the first's second occurrence, not another call.
    assert steps[1].step == steps[0].step + "#2"


async def test_unannotated_and_plain_parameters_behave_as_before(home):
    @graph_fn(name="plain")
    async def plain(a, b: int, c: dict):
        return {"a": a, "b": b, "c": c}

    assert plain.typed is None  # nothing to structure: no cattrs on this path
    async with rt_open(home):
        assert await plain(a={"k": 1}, b="not checked", c={"x": [1]}) == {
            "a": {"k": 1}, "b": "not checked", "c": {"x": [1]}}


async def test_a_bad_typed_argument_to_a_child_fails_the_call_with_the_path(home):
    @tool
    def area(shape: Shape):
        return 0

    @graph_fn(name="outer")
    async def outer(*, context):
        with pytest.raises(InputError, match=r"shape.points\[0\].y: expected float, got 'up'"):
            await area({"name": "s", "points": [{"x": 1, "y": "up"}]}, context=context)
        return "refused"

    async with rt_open(home):
        assert await outer() == "refused"


def test_resume_structures_the_recorded_inputs_again(tmp_path):
    import signal

    (tmp_path / "plan.py").write_text(PLAN_FILE + textwrap.dedent("""
        from aethergraph import tool

        @tool(outputs=["n"])
        def count(stages: list[Stage]):
            assert all(isinstance(s, Stage) for s in stages)
            return len(stages)

        @graph_fn(name="counted")
        async def counted(spec: Spec, *, context):
            assert isinstance(spec, Spec)
            return {"n": (await count(spec.stages))["n"], "mode": spec.mode.value}
    """))
    crashed = ag("run", "plan.py:counted", "--input", json.dumps({"spec": GOOD["spec"]}),
                 env={"AETHERGRAPH_FAULT": "kill:node_started:counted/count", "AETHERGRAPH_DURABILITY": "strict"},
                 cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    resumed = ag("resume", run["run_id"], "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["outputs"] == {"n": 2, "mode": "careful"}


def test_input_file_and_option_errors_are_one_line_exit_2(tmp_path):
    (tmp_path / "plan.py").write_text(PLAN_FILE)
    missing = ag("run", "plan.py:plan", "--input-file", "nope.json", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (2, "ag: --input-file nope.json: No such file or directory\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    not_object = ag("run", "plan.py:plan", "--input-file", "list.json", cwd=tmp_path)
    assert (not_object.returncode, not_object.stderr) == (2, "ag: --input-file list.json must be a JSON object, got list\n")
    limit = ag("run", "plan.py:plan", "--input", json.dumps(GOOD), "--max-concurrency", "2", cwd=tmp_path)
    assert limit.returncode == 2 and "--max-concurrency is for @graphify graphs" in limit.stderr


def test_an_annotation_that_does_not_resolve_leaves_only_its_own_parameter_alone():
    from aethergraph.typed import TypedParams

    async def fn(shape: Shape, ctx_thing: OnlyForTypeCheckers, n: int):  # noqa: F821
        return shape

    typed = TypedParams.of(fn, __import__("inspect").signature(fn))
    assert typed is not None and list(typed.types) == ["shape"]
