"""The dashboard, driven key by key (Textual's Pilot) against real runtimes and real stores.

Every screen and every action: runs list and filter, run detail (nodes, timeline, log,
messages, progress, metrics), asks answered in the modal with the runtime's own validation,
memory queries, artifact preview and export, help, the command palette, numbered panels and
esc; cancel a node, cancel a run, retry a node, resume an interrupted run; attaching to a
runtime in another process and re-attaching when it restarts; quitting while hosting a run.

The runtime is real: hosted in the app's own trio guest run (``ag tui --run``), or a separate
process. Plain ``def`` tests: the app needs asyncio (see ``test_tui_support.drive``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from textual import events
from textual.widgets import DataTable, Input, OptionList, RichLog, Sparkline, Static

from aethergraph.runtime import events as ev
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events
from aethergraph.tui.app import AetherGraphApp
from aethergraph.tui.messages import RetryRequested
from aethergraph.tui.screens import AnswerModal, ConfirmModal, ExportModal, HelpScreen
from aethergraph.tui.widgets import NodeTree, ProgressPanel

from . import test_tui_support as support
from .test_tui_support import (
    ASK_OFFLINE,
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_OK,
    Notes,
    build_store,
    drive,
    until,
)


def elsewhere_run(run_id: str, day: int, graph: str, child: str) -> tuple[float, list]:
    """The first events of a run another machine wrote (its pid means nothing here), ``day``
    days after the fixed store's runs: started, its graph node, one tool ``child`` under it.
    Returns the run's start time and the events, for the test to add to."""
    t = support.T0 + day * 86400
    return t, [ev.RunStarted(run_id=run_id, ts=t, graph=graph, pid=1, host="elsewhere"),
               ev.NodeStarted(run_id=run_id, ts=t, node=graph, name=graph, kind="graph_fn"),
               ev.NodeStarted(run_id=run_id, ts=t, node=f"{graph}/{child}", name=child, kind="tool", parent=graph)]


def table_keys(app, table_id: str) -> list[str]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [row.key.value for row in table.ordered_rows]


def static_text(widget: Static) -> str:
    return str(widget.render())


def log_text(log) -> str:
    """The lines of a RichLog (messages) or of a LineView (timeline, log: all its items)."""
    if isinstance(log, RichLog):
        return "\n".join(strip.text for strip in log.lines)
    return "\n".join(log.text_of(item).plain for item in log.items)


def run_status(home: Path, run_id: str) -> str | None:
    for e in read_events(StoreLayout.at(home).run_log(run_id), warn=False):
        if type(e) is ev.RunFinished:
            return e.status
    return None


async def confirm(pilot, app, contains: str) -> None:
    """The action's confirmation must name what it does; then say yes."""
    await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
    title = static_text(app.screen.query_one("#confirm-title", Static))
    assert contains in title, title
    await pilot.press("y")


async def select_node(pilot, app, path: str) -> None:
    tree = app.screen.query_one(NodeTree)
    tree.focus()
    for _ in range(20):
        if tree.selected_path == path:
            return
        await pilot.press("down")
    raise AssertionError(f"node {path} not in the tree: {tree.paths}")


# -- history: runs, memory, artifacts -------------------------------------------------------------


def test_runs_panel_newest_first_filter_and_interrupted(home):
    build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: table_keys(app, "runs-table"), "runs from the index")
        assert table_keys(app, "runs-table") == [RUN_CANCELLED, RUN_INTERRUPTED, RUN_FAILED, RUN_OK]
        table = app.screen.query_one("#runs-table", DataTable)
        statuses = [str(table.get_cell(k, "status")) for k in table_keys(app, "runs-table")]
        assert statuses == ["CANCELLED", "INTERRUPTED", "FAILED", "SUCCEEDED"]
        assert str(table.get_cell(RUN_INTERRUPTED, "asks")) == "1"  # its open ask waits for a resume
        assert app.ask_count == 1
        await pilot.press("slash", *"fail")
        assert table_keys(app, "runs-table") == [RUN_FAILED]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is table
        await pilot.press("slash", "escape")  # esc clears it
        assert table_keys(app, "runs-table") == [RUN_CANCELLED, RUN_INTERRUPTED, RUN_FAILED, RUN_OK]
        await pilot.press("down", "down", "down", "enter")
        await until(pilot, lambda: app.detail and app.detail.loaded, "the run's log")
        assert app.current_mode == "run" and app.detail.run_id == RUN_OK

    drive(app, scenario)


def test_memory_panel_queries_and_shows_pretty_json(home):
    build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await pilot.press("4")
        await until(pilot, lambda: len(table_keys(app, "memory-table")) == 6, "all memory, newest first")
        first = app.screen.event_for(table_keys(app, "memory-table")[0])
        assert first.kind == "job_failed"
        assert '"job_id": "job_17"' in str(app.screen.query_one("#memory-json", Static).render())
        query = app.screen.query_one("#memory-query", Input)
        for line, count in [("kind:epoch", 5), ("tag:train entity:toy", 5), (f"run:{RUN_FAILED}", 1),
                            ("mirror refused", 1), ("kind:epoch since:1h", 0), ("kind:nothing", 0)]:
            await pilot.press("slash")
            assert app.focused is query
            query.value = line
            await pilot.press("enter")
            await until(pilot, lambda: "searching" not in static_text(app.screen.query_one("#memory-status")),
                        f"the answer to {line!r}")
            assert len(table_keys(app, "memory-table")) == count, line
        query.value = "since:yesterday-ish"
        await pilot.press("slash", "enter")
        assert "cannot read 'yesterday-ish' as a time" in static_text(app.screen.query_one("#memory-status"))

    drive(app, scenario)


def test_artifacts_panel_previews_and_exports(home, tmp_path):
    build_store(home)
    app = AetherGraphApp()
    out = tmp_path / "out"
    out.mkdir()

    async def scenario(pilot):
        await pilot.press("5")
        await until(pilot, lambda: table_keys(app, "artifacts-table"), "the artifacts list")
        meta = app.screen.query_one("#artifact-meta", Static)
        await until(pilot, lambda: RUN_OK in static_text(meta), "provenance")
        assert "report.json · 55 bytes · application/json" in static_text(meta)
        await until(pilot, lambda: '"scores": [\n    0.5,' in app.screen.preview[1], "the pretty JSON preview")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ExportModal), "the export dialog")
        app.screen.query_one("#export-path", Input).value = str(out)
        await pilot.press("enter")
        await until(pilot, lambda: (out / "report.json").exists(), "the export")
        assert b'"scores"' in (out / "report.json").read_bytes()
        (out / "report.json").write_text("mine")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ExportModal), "the export dialog again")
        app.screen.query_one("#export-path", Input).value = str(out / "report.json")
        await pilot.press("enter")
        err = app.screen.query_one("#export-error", Static)
        await until(pilot, lambda: "press enter again to overwrite" in static_text(err), "the overwrite question")
        assert (out / "report.json").read_text() == "mine"
        await pilot.press("enter")
        await until(pilot, lambda: (out / "report.json").read_bytes().startswith(b"{"), "the overwrite")

    drive(app, scenario)


def test_help_palette_numbered_panels_and_esc(home):
    build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: app.state.index_loaded, "the index")
        for key, mode in [("3", "asks"), ("4", "memory"), ("5", "artifacts"), ("2", "run"), ("1", "runs")]:
            await pilot.press(key)
            assert app.current_mode == mode
        await pilot.press("escape")  # Runs is the top: esc stays there
        assert app.current_mode == "runs"
        await pilot.press("3", "4", "escape")  # back: to the panel before
        assert app.current_mode == "asks"
        await pilot.press("escape")
        assert app.current_mode == "runs"
        await pilot.press("5")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("1")  # panels do not move under an open dialog
        assert app.current_mode == "artifacts" and isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("colon")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", "the command palette")
        await pilot.press(*f"open run {RUN_FAILED[-6:]}")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.current_mode == "run" and app.detail.run_id == RUN_FAILED,
                    "the run picked in the palette")
        await until(pilot, lambda: app.detail.loaded, "its log")
        header = app.screen.query_one("#run-header", Static)
        await until(pilot, lambda: "FAILED" in static_text(header), "the header drawn on the next tick")
        assert "ValueError: bad row 7" in static_text(header)
        await pilot.press("q")

    drive(app, scenario)


def test_small_terminal_resize_and_no_color(home, monkeypatch):
    build_store(home)
    monkeypatch.setenv("NO_COLOR", "1")
    app = AetherGraphApp()

    async def scenario(pilot):
        assert app.no_color
        await until(pilot, lambda: table_keys(app, "runs-table"), "runs")
        for size in [(132, 40), (60, 20), (80, 24)]:
            await pilot.resize_terminal(*size)
            await pilot.press("2", "3", "1")
            bar = app.screen.query_one("#topbar", Static)
            assert "Asks [1]" in static_text(bar), size
        await pilot.press("2")
        await until(pilot, lambda: app.detail and app.detail.loaded, "a run")

    drive(app, scenario, size=(80, 24))


# -- asks, against a runtime hosted by the app ----------------------------------------------------


def test_answer_text_choice_and_approval_with_validation(home):
    app = AetherGraphApp(poll_s=0.2, run=support.asker)
    notes = Notes(app)

    def open_ask(kind):
        return [a for a in app.state.asks.values() if a.kind == kind]

    async def scenario(pilot):
        await until(pilot, lambda: open_ask("text"), "the text ask")
        # The ask can show (from the hosted run) a moment before the counts and the top bar do.
        await until(pilot, lambda: app.ask_count == 1 and app.live_count == 1, "the counts")
        await until(pilot, lambda: "Asks [1]" in static_text(app.screen.query_one("#topbar", Static)),
                    "the top bar's count")
        await pilot.press("3")
        await until(pilot, lambda: table_keys(app, "asks-table"), "the inbox")
        await pilot.press("enter")
        assert isinstance(app.screen, AnswerModal)
        await pilot.press("enter")  # empty: the runtime refuses, the dialog stays
        err = app.screen.query_one("#answer-error", Static)
        await until(pilot, lambda: "the answer is empty" in static_text(err), "the runtime's refusal")
        await pilot.press(*"Ada", "enter")
        choice = await until(pilot, lambda: open_ask("choice"), "the choice ask")
        await until(pilot, lambda: not isinstance(app.screen, AnswerModal), "the dialog closed")
        # The run's next ask may come before the answer's acknowledgement is shown.
        await until(pilot, lambda: notes.has("answered ") and notes.has(": Ada"), "the answer's note")
        await until(pilot, lambda: table_keys(app, "asks-table") == [choice[0].ask_id], "the inbox redrawn")
        await pilot.press("enter")
        assert isinstance(app.screen, AnswerModal) and isinstance(app.focused, OptionList)
        deadline = static_text(app.screen.query_one("#answer-deadline", Static))
        assert deadline.startswith("expires in ")
        await pilot.press("tab", *"purple", "enter")
        err = app.screen.query_one("#answer-error", Static)
        await until(pilot, lambda: "'purple' is not one of the options: red, green, blue" in static_text(err),
                    "the runtime's refusal of an option not offered")
        await pilot.press("shift+tab", "down", "enter")  # the second option
        approval = await until(pilot, lambda: open_ask("approval"), "the approval ask")
        await until(pilot, lambda: table_keys(app, "asks-table") == [approval[0].ask_id], "the inbox redrawn")
        await pilot.press("enter", "enter")  # the first option approves
        await until(pilot, lambda: app.hosted_result, "the run's end")
        assert app.backend.hosted_outcome.outputs == {"name": "Ada", "colour": "green", "ship": True}
        assert app.ask_count == 0
        # The answers are in the run's log, from this dashboard's sidecar connection.
        run_id = app.hosted_result.run_id
        answered = [e for e in read_events(StoreLayout.at(home).run_log(run_id)) if type(e) is ev.AskAnswered]
        assert [(e.answer, e.by) for e in answered] == [("Ada", "ag tui (sidecar)"), ("green", "ag tui (sidecar)"),
                                                        ("Ship", "ag tui (sidecar)")]

    drive(app, scenario)


# -- run detail and node actions ------------------------------------------------------------------


def test_run_detail_live_and_retry_node(home):
    support.STUCK["calls"] = 0
    app = AetherGraphApp(poll_s=0.2, run=support.worker)
    notes = Notes(app)

    async def scenario(pilot):
        await until(pilot, lambda: app.state.live_runs, "the hosted run")
        (run_id,) = app.state.live_runs
        await pilot.press("1")
        await until(pilot, lambda: table_keys(app, "runs-table"), "the live run in the list")
        await pilot.press("enter")
        await until(pilot, lambda: app.detail and app.detail.loaded, "its log")
        stuck = "tui_worker/stuck_step"
        await until(pilot, lambda: stuck in app.detail.summary.nodes, "the stuck step, live")
        screen = app.screen
        await until(pilot, lambda: stuck in screen.query_one(NodeTree).paths, "the node in the tree")
        # progress bars, metrics, log and messages all came through
        assert screen.query_one(ProgressPanel).has_class("-active")
        assert [len(s.data or []) for s in screen.query(Sparkline)] == [4, 4]
        # A log on a hidden tab draws when it is shown.
        for key, log_id, line in [("l", "log", "disk is 91% full"), ("m", "messages", "starting the work"),
                                  ("t", "timeline", "stuck_step tool stuck_step")]:
            await pilot.press(key)
            log = screen.query_one(f"#{log_id}-log")
            await until(pilot, lambda line=line, log=log: line in log_text(log), f"{line!r} in the {log_id} tab")
        await select_node(pilot, app, stuck)
        await pilot.press("r")
        await confirm(pilot, app, f"Retry node {stuck} of run {run_id}?")
        await until(pilot, lambda: app.detail.summary.nodes[stuck].state == ev.SUCCEEDED, "the retried step")
        assert app.detail.summary.nodes[stuck].attempts == 2
        assert notes.has(f"retry requested: node {stuck}")
        # the run now asks; 'a' answers it from the detail panel
        await until(pilot, lambda: app.detail.summary.open_asks, "the ask")
        await pilot.press("a")
        assert isinstance(app.screen, AnswerModal)
        await pilot.press(*"Grace", "enter")
        await until(pilot, lambda: app.detail.status == ev.SUCCEEDED, "the run's end, live")
        assert app.backend.hosted_outcome.outputs == {"doubled": 42, "name": "Grace"}
        await pilot.press("r")  # nothing is running any more: the runtime says so
        await confirm(pilot, app, "Retry node")
        await until(pilot, lambda: notes.has("is not running in any live runtime", "error"), "the refusal")

    drive(app, scenario)


def test_cancel_a_node_then_the_run(home):
    app = AetherGraphApp(poll_s=0.2, run=support.hanger)
    notes = Notes(app)

    async def scenario(pilot):
        await until(pilot, lambda: app.state.live_runs, "the hosted run")
        (run_id,) = app.state.live_runs
        app.open_run(run_id)
        first = "tui_hanger/forever"
        await until(pilot, lambda: app.detail.loaded and first in app.detail.summary.nodes, "the first step")
        await until(pilot, lambda: first in app.screen.query_one(NodeTree).paths, "the tree")
        await select_node(pilot, app, first)
        await pilot.press("x")
        await confirm(pilot, app, f"Cancel node {first} of run {run_id}?")
        await until(pilot, lambda: app.detail.summary.nodes[first].state == ev.CANCELLED, "the node cancelled")
        await until(pilot, lambda: "tui_hanger/forever#2" in app.detail.summary.nodes, "the run carrying on")
        assert app.detail.status == ev.RUNNING
        await pilot.press("c")
        await confirm(pilot, app, f"Cancel run {run_id}?")
        await until(pilot, lambda: app.detail.status == ev.CANCELLED, "the run cancelled")
        assert notes.has(f"cancel requested: run {run_id}")
        await pilot.press("1")
        table = app.screen.query_one("#runs-table", DataTable)
        await until(pilot, lambda: str(table.get_cell(run_id, "status")) == "CANCELLED", "the list updated")
        await pilot.press("c")  # a finished run: nothing to cancel, said at once
        assert notes.has("there is nothing to cancel", "warning")

    drive(app, scenario)
    assert run_status(home, app.detail.run_id) == "cancelled"


# -- resume ---------------------------------------------------------------------------------------


def test_resume_needs_no_live_runtime_and_runs_in_its_own_process(home):
    """R with no runtime anywhere: a detached `ag resume` process takes the run; its reopened
    ask shows up live, is answered from the dashboard, and the run ends in that process."""
    build_store(home)
    app = AetherGraphApp(poll_s=0.2)
    notes = Notes(app)

    async def scenario(pilot):
        await until(pilot, lambda: table_keys(app, "runs-table"), "runs")
        await pilot.press("down", "R")
        await confirm(pilot, app, f"Resume run {RUN_INTERRUPTED}?")
        await until(pilot, lambda: notes.has(f"resume started: run {RUN_INTERRUPTED}"), "the resume", timeout=60)
        await until(pilot, lambda: ASK_OFFLINE in app.state.asks, "its ask, live in the new process")
        await pilot.press("3", "enter")
        assert isinstance(app.screen, AnswerModal)
        await pilot.press("enter")  # Deploy
        await until(pilot, lambda: app.state.runs[RUN_INTERRUPTED].status == ev.SUCCEEDED, "the resumed run's end")

    from .test_detach import kill_leftover_runs

    try:
        drive(app, scenario, timeout=90)
    finally:
        kill_leftover_runs(home)  # the resumed run is detached: never leave it waiting
    events = read_events(StoreLayout.at(home).run_log(RUN_INTERRUPTED))
    (resumed,) = [e for e in events if type(e) is ev.RunResumed]
    assert resumed.pid != os.getpid()
    assert events[-1].status == "succeeded" and events[-1].outputs == {"n": 7, "deployed": True}


def test_answer_offline_then_resume_in_a_process_of_its_own(home):
    build_store(home)
    app = AetherGraphApp(poll_s=0.2, run=support.noop)
    notes = Notes(app)

    async def scenario(pilot):
        await until(pilot, lambda: app.hosted_result and app.live_count, "the dashboard's own runtime")
        await until(pilot, lambda: ASK_OFFLINE in app.state.offline_asks, "the interrupted run's ask")
        await pilot.press("3", "enter")
        assert isinstance(app.screen, AnswerModal)
        assert "kept for `ag resume`" in static_text(app.screen.query_one("#answer-deadline", Static))
        await pilot.press("tab", *"maybe", "enter")  # checked against the options, offline too
        err = app.screen.query_one("#answer-error", Static)
        await until(pilot, lambda: "not one of the options" in static_text(err), "the refusal")
        await pilot.press("shift+tab", "enter")  # Deploy
        await until(pilot, lambda: notes.has(f"answered {ASK_OFFLINE}: Deploy (kept for the run's resume)"),
                    "the offline answer")
        await pilot.press("1")
        await until(pilot, lambda: RUN_INTERRUPTED in table_keys(app, "runs-table"), "runs")
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index(RUN_INTERRUPTED))
        await pilot.press("R")
        await confirm(pilot, app, f"Resume run {RUN_INTERRUPTED}?")
        await until(pilot, lambda: notes.has(f"resume started: run {RUN_INTERRUPTED}"), "the resume", timeout=60)
        await until(pilot, lambda: app.state.runs[RUN_INTERRUPTED].status == ev.SUCCEEDED, "the resumed run's end")

    drive(app, scenario)
    events = read_events(StoreLayout.at(home).run_log(RUN_INTERRUPTED))
    (resumed,) = [e for e in events if type(e) is ev.RunResumed]
    assert resumed.pid != os.getpid()  # not in the dashboard's own runtime: a process of its own
    assert events[-1].status == "succeeded" and events[-1].outputs == {"n": 7, "deployed": True}


# -- quitting while hosting ----------------------------------------------------------------------


def test_quit_while_hosting_asks_then_cancels_cleanly(home):
    app = AetherGraphApp(poll_s=0.2, run=support.hanger)

    async def scenario(pilot):
        await until(pilot, lambda: app.state.live_runs, "the hosted run")
        await pilot.press("q")
        await confirm(pilot, app, "Quit and cancel")
        await until(pilot, lambda: app.return_value is not None, "the app's exit")

    drive(app, scenario)
    assert app.return_value == 130
    (run_id,) = [p.stem for p in StoreLayout.at(home).iter_logs()]
    assert run_status(home, run_id) == "cancelled"


# -- another process's runtime, which restarts ----------------------------------------------------

ASKING_SCRIPT = textwrap.dedent("""
    import trio
    from aethergraph import graph_fn

    @graph_fn(name="remote")
    async def remote(*, context):
        return {"said": await context.channel().ask_text("Remote question?")}

    trio.run(remote)
""")


@pytest.mark.slow
def test_attaches_to_another_process_and_again_after_it_restarts(home, tmp_path):
    """Attach, lose the runtime (killed: its run shows INTERRUPTED), attach to its successor;
    then close the dashboard: the other process's run is not disturbed and still takes an
    answer from anywhere."""
    import json

    from .conftest import ag

    script = tmp_path / "remote.py"
    script.write_text(ASKING_SCRIPT)
    env = dict(os.environ, AETHERGRAPH_HOME=str(home))

    def start():
        return subprocess.Popen([sys.executable, str(script)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    app = AetherGraphApp(poll_s=0.2)
    notes = Notes(app)
    procs = []
    seen = {}

    async def scenario(pilot):
        procs.append(start())
        await until(pilot, lambda: app.live_count == 1 and app.ask_count == 1, "the first runtime and its ask")
        (first,) = app.state.live_runs
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        await until(pilot, lambda: app.live_count == 0, "the runtime gone")
        await until(pilot, lambda: app.state.runs[first].status == ev.INTERRUPTED, "its run interrupted")
        assert notes.has("went away", "warning")
        procs.append(start())
        await until(pilot, lambda: app.live_count == 1 and app.state.live_runs, "the restarted runtime")
        (second,) = app.state.live_runs
        assert second != first
        live = await until(pilot, lambda: [a.ask_id for a in app.state.asks.values() if a.run_id == second],
                           "its ask")
        await pilot.press("3")
        await until(pilot, lambda: live[0] in table_keys(app, "asks-table"), "the live ask listed")
        seen["ask"], seen["run"] = live[0], second
        await pilot.press("q")  # not hosting anything: quits at once

    try:
        drive(app, scenario, timeout=60)
        # Not disturbed: after the dashboard closed, the run still takes the answer and ends
        # well (what it does next is the proof; a pause and a look would prove less, slower).
        answered = ag("answer", seen["ask"], "from elsewhere", env={"AETHERGRAPH_HOME": str(home)})
        disturbed = "closing the dashboard disturbed the run: "
        assert answered.returncode == 0, disturbed + answered.stderr
        assert procs[1].wait(timeout=20) == 0, disturbed + procs[1].stderr.read().decode()
    finally:
        for p in procs:
            p.kill()
    assert run_status(home, seen["run"]) == "succeeded"
    shown = json.loads(ag("show", seen["run"], "--json", env={"AETHERGRAPH_HOME": str(home)}).stdout)
    assert shown["run"]["outputs"] == {"said": "from elsewhere"}


# -- a fast run: batched, and the keys still answer ----------------------------------------------


def test_event_flood_is_batched_and_keys_still_answer(home):
    """A run emitting well over 1,000 events a second in the dashboard's own process: they reach
    the UI in ~10 batches a second, and every key pressed while they pour in is handled — the
    panel it asks for is the one on screen, drawn. (How quickly is bench B8's to measure.)"""
    from aethergraph import graph_fn
    from aethergraph.tui.messages import LiveEvents
    from aethergraph.tui.screens.asks import AsksScreen
    from aethergraph.tui.screens.run_detail import RunDetailScreen

    @graph_fn(name="tui_flood")
    async def flood(*, context):
        import trio

        mem = context.memory()
        await trio.sleep(1.0)  # while the test opens every panel once
        for i in range(1500):
            await mem.record("tick", {"i": i}, metrics={"i": float(i)})
            if i % 15 == 0:
                await trio.sleep(0.01)
        return {"n": 1500}

    app = AetherGraphApp(poll_s=0.2, run=flood)
    batches: list[int] = []
    post = app.backend.post

    def counting(msg):
        if isinstance(msg, LiveEvents):
            batches.append(len(msg.items))
        return post(msg)

    app.backend.post = counting

    async def scenario(pilot):
        await until(pilot, lambda: app.state.live_runs, "the flood", timeout=30)
        (run_id,) = app.state.live_runs

        panels = {"3": ("asks", AsksScreen), "2": ("run", RunDetailScreen)}

        async def switch(key: str) -> None:
            # Pilot.press waits for the whole process to go idle, which it never is during a
            # flood; send the key as the terminal driver would and wait for what it asked for.
            mode, screen = panels[key]
            deadline = time.monotonic() + 20  # (only so that a key never handled fails, not hangs)
            app.post_message(events.Key(key, key))
            while not (app.current_mode == mode and isinstance(app.screen, screen) and app.screen.is_mounted):
                assert time.monotonic() < deadline, f"key {key} not handled during the flood"
                await asyncio.sleep(0.002)
            # …and drawn: the run the flood is in, its log read (its graph named), or the asks
            # panel's own line.
            drawn = (lambda: "tui_flood" in static_text(app.screen.query_one("#run-header", Static))) \
                if mode == "run" else (lambda: static_text(app.screen.query_one("#asks-status", Static)))
            await until(pilot, drawn, f"the panel key {key} asked for, drawn")
            assert app.detail.run_id == run_id

        app.open_run(run_id)
        await switch("3")  # each panel is built once, on first show
        await switch("2")
        presses = 0
        while not app.hosted_result:
            for key in ("3", "2"):
                await switch(key)
                presses += 1
            await asyncio.sleep(0.2)
        assert presses >= 4
        await until(pilot, lambda: app.detail.loaded and len(app.detail.metrics["i"]) > 0, "the metrics")

    drive(app, scenario)
    # (events before the dashboard attached are in the log, not in the live stream)
    assert sum(batches) >= 600
    assert len(batches) * 20 <= sum(batches), f"{len(batches)} batches for {sum(batches)} events: not coalesced"


# -- issue 14: second pass ------------------------------------------------------------------------


def test_number_key_picks_the_option_enter_sends_what_is_shown(home):
    """`2` then enter on "1. Deploy / 2. Hold" answers Hold, and says so before sending."""
    layout = build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: app.ask_count == 1, "the offline ask")
        await pilot.press("3")
        await until(pilot, lambda: table_keys(app, "asks-table") == [ASK_OFFLINE], "the inbox")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AnswerModal), "the dialog")
        pending = app.screen.query_one("#answer-pending", Static)
        assert "enter sends: 1. Deploy" in static_text(pending)
        await pilot.press("2")
        assert app.screen.query_one("#answer-options", OptionList).highlighted == 1
        assert "enter sends: 2. Hold" in static_text(pending)
        await pilot.press("1", "2")  # another digit moves it again; out of range keys do nothing
        assert "enter sends: 2. Hold" in static_text(pending)
        await pilot.press("9")
        assert "enter sends: 2. Hold" in static_text(pending)
        await pilot.press("tab", *"de")  # typing: the line says what the runtime will make of it
        assert "enter sends: 1. Deploy" in static_text(pending)
        await pilot.press("backspace", "backspace", "1")
        assert "enter sends: 1. Deploy" in static_text(pending)
        await pilot.press("backspace", "shift+tab")
        assert "enter sends: 2. Hold" in static_text(pending)
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, AnswerModal), "the answer sent")

    drive(app, scenario)
    answered = [e for e in read_events(layout.run_log(RUN_INTERRUPTED)) if type(e) is ev.AskAnswered]
    assert [e.answer for e in answered] == ["Hold"]


def screen_text(app) -> str:
    """What the terminal would be sent for the current screen, as text (every layer)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def assert_inert(text: str, where: str) -> None:
    from aethergraph.runtime.textsafe import _UNSAFE_LINE

    bad = sorted({repr(c) for c in _UNSAFE_LINE.findall(text.replace("\n", ""))})
    assert not bad, f"control characters reached the terminal on {where}: {bad}"


def test_hostile_run_content_is_shown_not_obeyed_in_every_panel(home):
    """Control sequences and markup in what a run wrote are shown as text on every panel."""
    from .test_tui_support import RUN_HOSTILE, build_hostile_store

    build_hostile_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: RUN_HOSTILE in table_keys(app, "runs-table"), "the hostile run")
        assert_inert(screen_text(app), "the runs panel")
        assert "graph␛]0;pwned␇" in screen_text(app)
        app.open_run(RUN_HOSTILE)
        await until(pilot, lambda: app.detail and app.detail.loaded, "its log")
        for key in ("t", "l", "m", "g"):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert_inert(screen_text(app), f"run detail tab {key}")
        await pilot.press("m")
        await pilot.pause(0.1)
        shown = log_text(app.screen.query_one("#messages-log", RichLog)).replace("\n", "")  # (wrapped)
        assert "[red]markup[/]" in shown and "[bold]bold[/bold]" in shown  # markup stayed literal
        assert "␛[2J" in shown and "\\x9b2J" in shown and "<U+202E>" in shown and "before␍after" in shown
        await pilot.press("3")
        await until(pilot, lambda: "ask-hostile" in table_keys(app, "asks-table"), "the hostile ask")
        assert_inert(screen_text(app), "the asks panel")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AnswerModal), "the dialog")
        assert_inert(screen_text(app), "the answer dialog")
        assert "[red]markup[/]" in screen_text(app)
        await pilot.press("escape", "4")
        await until(pilot, lambda: table_keys(app, "memory-table"), "memory")
        await pilot.pause(0.2)
        assert_inert(screen_text(app), "the memory panel")
        await pilot.press("5")
        await until(pilot, lambda: app.screen.preview[1], "the preview")
        await pilot.pause(0.2)
        assert_inert(screen_text(app), "the artifacts panel")
        app.post_message(RetryRequested(RUN_HOSTILE, f"graph{chr(27)}]0;pwned{chr(7)}/node"))
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
        assert_inert(screen_text(app), "the confirmation")
        await pilot.press("n")
        app.notify("run says \x1b]0;pwned\x07 [red]markup[/]", title="\x1b[2J")
        await pilot.pause(0.2)
        text = screen_text(app)
        assert_inert(text, "a notification")
        assert "[red]markup[/]" in text

    drive(app, scenario, size=(120, 40))


async def test_no_attach_toast_for_a_runtime_that_exited_normally(home, autojump_clock):
    """A runtime found by one poll and gone by the connect: news only if its process died or
    it is alive and refuses us, never when it closed normally (advert removed)."""
    from aethergraph.runtime.history import HOST
    from aethergraph.runtime.sidecar.registry import Advert, advert_path, write_advert
    from aethergraph.tui.backend import Backend, Watcher
    from aethergraph.tui.messages import BackendProblem

    layout = StoreLayout.at(home).ensure()
    posted: list = []
    backend = Backend(posted.append, home, poll_s=0.2)

    def advert(rid: str, pid: int) -> Advert:
        return Advert(runtime_id=rid, pid=pid, host=HOST, started=0.0, protocol=1,
                      unix=str(layout.runtimes_dir / f"{rid}.sock"))

    def problems() -> list[str]:
        return [m.text for m in posted if isinstance(m, BackendProblem)]

    closed = advert("1-closed", os.getpid())  # its advert is already gone: it exited normally
    await backend._watch(Watcher(closed))
    assert problems() == []
    died = advert("2-died", support.DEAD_PID)  # advert left behind by a process that is gone
    write_advert(layout, died)
    await backend._watch(Watcher(died))
    assert problems() == [f"runtime 2-died (pid {support.DEAD_PID}) died before the dashboard attached"]
    refusing = advert("3-refusing", os.getpid())  # alive, advertised, and no socket: a real problem
    write_advert(layout, refusing)
    await backend._watch(Watcher(refusing))
    assert len(problems()) == 2 and problems()[1].startswith("cannot attach to runtime 3-refusing: ")
    assert advert_path(layout, "3-refusing").exists()


def test_esc_goes_back_and_stops_at_the_top(home):
    """Esc never flips between two panels, and on the Runs list it never opens a run."""
    build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: table_keys(app, "runs-table"), "runs")
        await pilot.press("escape", "escape")
        assert app.current_mode == "runs" and app.detail is None
        await pilot.press("enter")  # open the highlighted run
        await until(pilot, lambda: app.current_mode == "run", "the run")
        await pilot.press("1", "2", "1", "2")
        modes = []
        for _ in range(4):
            await pilot.press("escape")
            modes.append(app.current_mode)
        assert modes == ["runs", "runs", "runs", "runs"]
        await pilot.press("3", "2", "4")
        modes = []
        for _ in range(4):
            await pilot.press("escape")
            modes.append(app.current_mode)
        assert modes == ["run", "asks", "runs", "runs"]

    drive(app, scenario)


def test_interrupted_run_duration_is_one_rule_in_ag_runs_and_the_dashboard(home):
    """After an offline answer (the log grows) the runs table, the detail header and `ag runs`
    give an interrupted run the same duration: runtime.info.RunInfo.duration."""
    import json

    from aethergraph.runtime.info import RunInfo

    from .conftest import ag

    build_store(home)
    app = AetherGraphApp()
    shown = {}

    async def scenario(pilot):
        await until(pilot, lambda: app.ask_count == 1, "the offline ask")
        app.open_run(RUN_INTERRUPTED)
        await until(pilot, lambda: app.detail.loaded, "its log")
        await pilot.press("3", "enter", "enter")  # answer it while the run is down
        await until(pilot, lambda: app.ask_count == 0, "the answer taken")
        await until(pilot, lambda: app.detail.loaded and app.detail.summary.events == 4, "its log read again")
        await pilot.press("1")
        table = app.screen.query_one("#runs-table", DataTable)
        await until(pilot, lambda: str(table.get_cell(RUN_INTERRUPTED, "duration")) != "0.2s", "the new duration")
        shown["table"] = str(table.get_cell(RUN_INTERRUPTED, "duration"))
        await pilot.press("2")
        await pilot.pause(0.2)
        shown["header"] = static_text(app.screen.query_one("#run-header", Static))

    drive(app, scenario)
    (row,) = [r for r in json.loads(ag("runs", "--json", env={"AETHERGRAPH_HOME": str(home)}).stdout)
              if r["run_id"] == RUN_INTERRUPTED]
    from aethergraph.tui.format import dur

    assert row["status"] == "interrupted"
    assert row["duration_s"] == RunInfo(run_id=row["run_id"], status=row["status"], started=row["started"],
                                        last_ts=row["last_ts"]).duration(0.0)
    assert shown["table"] == dur(row["duration_s"])
    assert f"INTERRUPTED  {dur(row['duration_s'])}" in shown["header"], shown["header"]
    show = json.loads(ag("show", RUN_INTERRUPTED, "--json", env={"AETHERGRAPH_HOME": str(home)}).stdout)
    assert show["run"]["duration_s"] == row["duration_s"]  # ag show: the same rule


def test_j_and_k_scroll_the_help(home):
    build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: app.state.index_loaded, "the index")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.query_one("#help-body")
        await pilot.pause(0.1)
        assert body.max_scroll_y > 3, "the help should not fit in 24 lines"
        await pilot.press("j", "j", "j")
        await pilot.pause(0.3)
        assert body.scroll_y == 3
        await pilot.press("k")
        await pilot.pause(0.3)
        assert body.scroll_y == 2
        await pilot.press("G")
        await pilot.pause(0.3)
        assert body.scroll_y == body.max_scroll_y
        await pilot.press("g")
        await pilot.pause(0.3)
        assert body.scroll_y == 0

    drive(app, scenario, size=(80, 24))


def rendered_style(app, word: str):
    """The style a word is drawn with, as the terminal gets it (after Textual's filters)."""
    for strip in app.screen._compositor.render_strips():
        for seg in strip:
            if seg.text.strip() == word:
                return seg.style
    raise AssertionError(f"{word!r} is not on the screen")


@pytest.mark.parametrize("no_color", [False, True])
def test_states_read_by_severity_in_colour_and_by_weight_without(home, monkeypatch, no_color):
    """FAILED is the loudest state: red and bold in colour, a reversed block under NO_COLOR
    (where every colour turns grey); yellow states next; on a 16-colour terminal (TERM=screen)
    the colours come back as red and yellow, not magenta."""
    from rich.color import ColorSystem

    build_store(home)
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: table_keys(app, "runs-table"), "runs")
        await pilot.press("down", "down", "down")  # the cursor on SUCCEEDED: every other state off it
        await pilot.pause(0.1)
        failed, cancelled, interrupted = (rendered_style(app, w) for w in ("FAILED", "CANCELLED", "INTERRUPTED"))
        if no_color:
            assert failed.bold and failed.reverse
            assert interrupted.bold and not interrupted.reverse
            assert cancelled.underline and not cancelled.bold and not cancelled.reverse
        else:
            def sixteen(style):
                return style.color.downgrade(ColorSystem.STANDARD).number

            assert failed.bold and sixteen(failed) in (1, 9)  # red
            assert sixteen(interrupted) in (3, 11) and sixteen(cancelled) in (3, 11)  # yellow
            assert interrupted.bold and not cancelled.bold

    drive(app, scenario, size=(100, 30))


def build_many_runs(home: Path, n: int) -> list[str]:
    """``n`` finished runs a second apart (ids newest first), indexed."""
    from aethergraph.runtime.store.index import Index

    layout = StoreLayout.at(home).ensure()
    ids = []
    for i in range(n):
        ts = support.T0 + i
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ts)) + f"-{i:06x}"
        support.write_log(layout, run_id, [
            ev.RunStarted(run_id=run_id, ts=ts, graph=f"job{i}", pid=1, host="elsewhere"),
            ev.RunFinished(run_id=run_id, ts=ts + 0.5, status="succeeded", duration_s=0.5),
        ])
        ids.append(run_id)
    index = Index(layout)
    try:
        index.catch_up()
    finally:
        index.close()
    return ids[::-1]


def test_runs_list_pages_through_the_whole_store_and_shows_the_total(home):
    """Scrolling to the end reads the next page (keyset on the index) until every run is
    listed; the status line gives the total all along. (It stopped at 1,000 rows.)"""
    from aethergraph.tui.state import DashboardState

    ids = build_many_runs(home, 2 * DashboardState.PAGE + 50)
    total = len(ids)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: len(table_keys(app, "runs-table")) == DashboardState.PAGE, "the first page")
        status = app.screen.query_one("#runs-status", Static)
        assert f"{DashboardState.PAGE} of {total} runs" in static_text(status)
        for shown in (2 * DashboardState.PAGE, total):
            await pilot.press("G")  # to the last row: the next page comes
            await until(pilot, lambda shown=shown: len(table_keys(app, "runs-table")) == shown, f"{shown} rows")
        assert table_keys(app, "runs-table") == ids  # newest first, each once, none skipped
        await until(pilot, lambda: f"{total} of {total} runs" in static_text(status), "the total")
        assert "older" not in static_text(status)
        await pilot.press("g")
        assert app.screen.query_one("#runs-table", DataTable).cursor_row == 0

    drive(app, scenario)


@pytest.mark.parametrize("width", [80, 120])
def test_progress_shows_count_rate_and_eta_and_cuts_only_the_title(home, width):
    from aethergraph.tui.widgets.progress import ProgressRow

    layout = StoreLayout.at(home).ensure()
    r, t = "20250104-000000-f6f6f6", support.T0 + 2 * 86400
    title = "downloading the nightly snapshot of every customer's shard"
    support.write_log(layout, r, [
        ev.RunStarted(run_id=r, ts=t, graph="sync", pid=support.DEAD_PID, host=support.HOST),
        ev.Progress(run_id=r, ts=t + 1, node="sync", progress_id="p", title=title, state="start", current=10,
                    total=900),
        ev.Progress(run_id=r, ts=t + 11, node="sync", progress_id="p", title=title, state="update", current=73,
                    total=900, subtitle="shard 7"),
    ])
    app = AetherGraphApp()

    async def scenario(pilot):
        app.open_run(r)
        await until(pilot, lambda: app.detail and app.detail.loaded, "the run")
        row = await until(pilot, lambda: list(app.screen.query(ProgressRow)), "the bar")
        await pilot.pause(0.2)
        line = row[0].render().plain
        assert len(line) <= row[0].size.width
        # 63 more in 10 s of the run's own time: 6.3/s, and 827 left take 2m11s
        assert line.endswith("73/900 8% 6.3/s ETA 2m11s"), line
        assert line.startswith("downloading") and "…" in line, line  # the title gives way
        await pilot.resize_terminal(200, 40)
        await pilot.pause(0.2)
        wide = row[0].render().plain
        assert "shard 7" in wide and "…" not in wide and wide.endswith("ETA 2m11s"), wide

    drive(app, scenario, size=(width, 30))


def test_timeline_and_messages_reflow_on_resize(home):
    """Lines are drawn for the width of now: widening the terminal shows what 80 columns cut."""
    build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        app.open_run(RUN_OK)
        await until(pilot, lambda: app.detail and app.detail.loaded, "the run")
        await pilot.press("t", "tab", "g")  # the timeline, from its top
        await pilot.pause(0.3)
        full = "fetch attempt 1 → 2 in 0.25s (TimeoutError: slow mirror)"
        assert full not in screen_text(app) and "fetch attempt 1" in screen_text(app)
        await pilot.resize_terminal(200, 30)
        await until(pilot, lambda: full in screen_text(app), "the line drawn again, whole")
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: full not in screen_text(app) and "fetch attempt 1" in screen_text(app),
                    "the line cut again at the new width")

    drive(app, scenario, size=(80, 24))


def test_log_follow_pause_search_level_zoom_and_node_filter(home):
    layout = StoreLayout.at(home).ensure()
    r, g = "20250105-000000-a7a7a7", "loggy"
    t, events = elsewhere_run(r, 3, g, child="fetch")
    for i in range(300):
        level = ("info", "debug", "warning", "error")[i % 4]
        node = f"{g}/fetch" if i % 3 == 0 else g
        events.append(ev.Log(run_id=r, ts=t + i, node=node, level=level, message=f"line {i} " + (
            "disk full" if i in (40, 140, 240) else "ok")))
    events.append(ev.RunFinished(run_id=r, ts=t + 400, status="succeeded", duration_s=400))
    support.write_log(layout, r, events)
    app = AetherGraphApp()

    async def scenario(pilot):
        from aethergraph.tui.widgets.lineview import LineView

        app.open_run(r)
        await until(pilot, lambda: app.detail and app.detail.loaded, "the run")
        await pilot.press("l", "tab")  # the log tab; tab moves from the node tree to it
        view = app.screen.query_one("#log-log", LineView)
        status = app.screen.query_one("#view-status", Static)
        await until(pilot, lambda: len(view.items) == 300, "the whole log (not its last 35 lines)")
        assert app.focused is view and view.follow and view.scroll_y == view.max_scroll_y
        assert "line 299" in screen_text(app)
        await pilot.press("pageup")  # scrolling up pauses following
        await pilot.pause(0.1)
        assert not view.follow and "paused: F or End follows" in static_text(status)
        await pilot.press("F")
        assert view.follow and view.scroll_y == view.max_scroll_y
        await pilot.press("g")
        assert view.scroll_y == 0 and not view.follow
        await pilot.press("slash", *"disk", "enter")  # search, from the top of the view
        assert app.focused is view
        matched = lambda: view.text_of(view.items[view.match_index]).plain  # noqa: E731
        assert "line 40 disk full" in matched()
        await pilot.press("n")
        assert "line 140 disk full" in matched() and "line 140 disk full" in screen_text(app)
        await pilot.press("n", "n")  # wraps around
        assert "line 40 disk full" in matched()
        await pilot.press("N")
        assert "line 240 disk full" in matched()
        await pilot.press("escape")  # clears the search
        assert view.search == "" and app.current_mode == "run"
        await pilot.press("v", "v")  # every level → info and above → warning and above
        await until(pilot, lambda: len(view.items) == 150, "warnings and errors only")
        assert {e.level for e in view.items} == {"warning", "error"}
        assert "level ≥ warning" in static_text(status)
        await pilot.press("v", "v")
        await until(pilot, lambda: len(view.items) == 300, "every level again")
        await pilot.press("z")  # full width: the tree gives way
        assert not app.screen.query_one(NodeTree).display
        await pilot.press("z")
        assert app.screen.query_one(NodeTree).display
        await select_node(pilot, app, f"{g}/fetch")  # a node picked: only its lines
        await until(pilot, lambda: len(view.items) == 100, "the node's lines")
        assert all(e.node == f"{g}/fetch" for e in view.items)
        timeline = app.screen.query_one("#timeline-log", LineView)
        assert all(e.node.startswith(f"{g}/fetch") for e in timeline.items)
        for i in range(8):  # the run goes on: only the picked node's new lines join the view
            app.detail.apply(ev.Log(run_id=r, seq=1000 + i, ts=t + 500 + i, node=f"{g}/fetch" if i % 2 else g,
                                    level="info", message=f"late {i}"))
        await until(pilot, lambda: len(view.items) == 104, "the node's new lines")
        assert [e.message for e in view.items[-4:]] == ["late 1", "late 3", "late 5", "late 7"]
        await pilot.press("up")  # the run's top node: everything
        await until(pilot, lambda: len(view.items) == 308, "all lines again")

    drive(app, scenario, size=(100, 30))


def test_node_tab_says_why_it_failed(home):
    """d: the run's error and its failed nodes; a failed node picked: its error, traceback,
    inputs and (a Failed return's) outputs."""
    layout = StoreLayout.at(home).ensure()
    r, t, g = "20250106-000000-b8b8b8", support.T0 + 4 * 86400, "etl"
    tb = 'Traceback (most recent call last):\n  File "etl.py", line 12, in load\n    parse(row)\nValueError: bad row 7'
    err = ev.ErrorInfo(type="ValueError", message="bad row 7", traceback=tb)
    support.write_log(layout, r, [
        ev.RunStarted(run_id=r, ts=t, graph=g, inputs={"day": "2025-01-06"}, pid=1, host="elsewhere"),
        ev.NodeStarted(run_id=r, ts=t, node=g, name=g, kind="graph_fn", inputs={"day": "2025-01-06"}),
        ev.NodeStarted(run_id=r, ts=t + 1, node=f"{g}/load", name="load", kind="tool", parent=g,
                       inputs={"path": "/data/rows.csv", "limit": 100}),
        ev.NodeFailed(run_id=r, ts=t + 2.5, node=f"{g}/load", error=err, outputs={"rows_read": 6}),
        ev.NodeFailed(run_id=r, ts=t + 2.6, node=g, error=err),
        ev.RunFinished(run_id=r, ts=t + 2.6, status="failed", error=err, duration_s=2.6),
    ])
    app = AetherGraphApp()

    async def scenario(pilot):
        app.open_run(r)
        await until(pilot, lambda: app.detail and app.detail.loaded, "the run")
        await pilot.press("d")
        body = app.screen.query_one("#node-detail-body", Static)
        await until(pilot, lambda: "failed nodes (2" in static_text(body), "the run's failed nodes")
        text = static_text(body)
        assert "✗ etl/load: ValueError: bad row 7" in text and '"day": "2025-01-06"' in text
        await select_node(pilot, app, f"{g}/load")
        await until(pilot, lambda: "traceback" in static_text(body), "the node's traceback")
        text = static_text(body)
        for part in ('File "etl.py", line 12, in load', '"path": "/data/rows.csv"', '"rows_read": 6',
                     "took 1.5s", "FAILED"):
            assert part in text, (part, text)

    drive(app, scenario, size=(120, 40))


def test_yank_copies_the_id_under_the_cursor_and_says_so(home):
    build_store(home)
    app = AetherGraphApp()
    notes = Notes(app)

    async def scenario(pilot):
        await until(pilot, lambda: table_keys(app, "runs-table"), "runs")
        await pilot.press("down", "y")
        assert app.clipboard == RUN_INTERRUPTED and notes.has(f"copied run id: {RUN_INTERRUPTED}")
        await pilot.press("3")
        await until(pilot, lambda: table_keys(app, "asks-table"), "the inbox")
        await pilot.press("y")
        assert app.clipboard == ASK_OFFLINE and notes.has(f"copied ask id: {ASK_OFFLINE}")
        await pilot.press("5")
        await until(pilot, lambda: table_keys(app, "artifacts-table"), "artifacts")
        await pilot.press("y")
        assert app.clipboard.startswith("ag://artifact/") and notes.has(f"copied artifact ref: {app.clipboard}")
        meta = app.screen.query_one("#artifact-meta", Static)
        assert app.clipboard not in static_text(meta)
        await pilot.press("f")  # the full ref on demand
        assert app.clipboard in static_text(meta)

    drive(app, scenario)


def test_a_new_ask_raises_a_toast_and_the_bell_once_and_b_turns_it_off(home):
    app = AetherGraphApp(poll_s=0.2, run=support.asker)
    notes = Notes(app)
    bells = []
    app.bell = lambda: bells.append(1)

    async def scenario(pilot):
        await until(pilot, lambda: notes.has("asks: Your name?"), "the alert for the first ask")
        await pilot.pause(0.3)
        assert len(bells) == 1 and len([m for m, _ in notes.items if "asks:" in m]) == 1
        await pilot.press("B")
        assert not app.ask_alerts and notes.has("alerts (toast and bell) off")
        await pilot.press("3")
        await until(pilot, lambda: table_keys(app, "asks-table"), "the inbox")
        await pilot.press("enter", *"Ada", "enter")
        await until(pilot, lambda: any(a.kind == "choice" for a in app.state.asks.values()), "the next ask")
        await pilot.pause(0.3)
        assert len(bells) == 1 and not notes.has("asks: Favourite colour?")

    drive(app, scenario)


def _keys_of(bindings) -> set[str]:
    from textual.binding import Binding

    from aethergraph.tui.screens.help import key_label

    out = set()
    for b in bindings:
        b = Binding(*b) if isinstance(b, tuple) else b
        if b.description:
            out.update(k.strip() for k in key_label(b.key).split(","))
    return out


def test_help_and_readme_list_every_key(home):
    """Every key a panel, its parts and the app bind is in `?` on that panel and in the README."""
    import io

    from rich.console import Console

    from aethergraph.tui.screens.artifacts import ArtifactsScreen
    from aethergraph.tui.screens.asks import AsksScreen
    from aethergraph.tui.screens.memory import MemoryScreen
    from aethergraph.tui.screens.run_detail import RunDetailScreen
    from aethergraph.tui.screens.runs import RunsScreen
    from aethergraph.tui.widgets.jobs import JobsPanel
    from aethergraph.tui.widgets.lineview import LineView
    from aethergraph.tui.widgets.tables import AsksTable, RowTable, RunsTable

    build_store(home)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### The dashboard"):readme.index("### Watching and answering")]
    parts = {"runs": [*RowTable.BINDINGS, *RunsTable.BINDINGS], "asks": [*RowTable.BINDINGS, *AsksTable.BINDINGS],
             "memory": RowTable.BINDINGS, "artifacts": RowTable.BINDINGS, "run": [*LineView.BINDINGS, *JobsPanel.BINDINGS]}
    screens = {"runs": RunsScreen, "run": RunDetailScreen, "asks": AsksScreen, "memory": MemoryScreen,
               "artifacts": ArtifactsScreen}
    app = AetherGraphApp()
    missing: list[str] = []

    async def scenario(pilot):
        await until(pilot, lambda: app.state.index_loaded, "the index")
        for key, mode in (("1", "runs"), ("2", "run"), ("3", "asks"), ("4", "memory"), ("5", "artifacts")):
            await pilot.press(key)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            out = io.StringIO()
            console = Console(file=out, width=100, color_system=None)
            for static in app.screen.query(Static):
                console.print(static.content)
            shown = out.getvalue()
            wanted = _keys_of([*screens[mode].BINDINGS, *parts[mode], *AetherGraphApp.BINDINGS])
            for k in sorted(wanted):
                if k not in shown:
                    missing.append(f"help on {mode}: {k}")
                in_readme = f"`{k}`" in section if len(k) == 1 else f"`{k}`".casefold() in section.casefold()
                if not in_readme and k not in ("↑", "↓"):
                    missing.append(f"README: {k}")
            await pilot.press("escape")

    drive(app, scenario, size=(100, 40))
    assert not missing, sorted(set(missing))


def test_new_runs_do_not_push_a_deep_cursor_out_of_view(home):
    from aethergraph.runtime.store.index import Index

    ids = build_many_runs(home, 120)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: len(table_keys(app, "runs-table")) == 120, "the runs")
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=80, animate=False)
        await pilot.pause(0.2)
        assert table.scroll_y > 0
        on_screen = table.cursor_row - table.scroll_y
        layout = StoreLayout.at(home)
        for k in range(3):  # three runs start meanwhile, newer than every listed one
            ts = support.T0 + 1000 + k
            run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ts)) + f"-ff{k:04x}"
            support.write_log(layout, run_id, [ev.RunStarted(run_id=run_id, ts=ts, graph="new", pid=1, host="x")])
        index = Index(layout)
        try:
            index.catch_up()
        finally:
            index.close()
        app.reload_index()
        await until(pilot, lambda: len(table_keys(app, "runs-table")) == 123, "the new runs on top")
        await pilot.pause(0.2)
        assert table_keys(app, "runs-table")[table.cursor_row] == ids[80]  # the same run
        assert table.cursor_row - table.scroll_y == on_screen  # at the same place on screen

    drive(app, scenario, size=(100, 30))


def test_same_name_siblings_are_grouped_with_their_states_and_numbers(home):
    from aethergraph.tui.widgets.node_tree import GROUP_AT

    layout = StoreLayout.at(home).ensure()
    r, g = "20250107-000000-c9c9c9", "fanout"
    t, events = elsewhere_run(r, 5, g, child="prepare")
    for i in range(1, 51):
        path = f"{g}/child_job" + (f"#{i}" if i > 1 else "")
        events.append(ev.NodeStarted(run_id=r, ts=t + i, node=path, name="child_job", kind="graph_fn", parent=g))
        events.append(ev.NodeStarted(run_id=r, ts=t + i, node=f"{path}/step", name="step", kind="tool", parent=path))
        if i <= 45:
            events.append(ev.NodeFinished(run_id=r, ts=t + i + 0.5, node=path))
        elif i <= 47:
            events.append(ev.NodeFailed(run_id=r, ts=t + i + 0.5, node=path,
                                        error=ev.ErrorInfo(type="E", message="no")))
    support.write_log(layout, r, events)
    app = AetherGraphApp()

    async def scenario(pilot):
        app.open_run(r)
        await until(pilot, lambda: app.detail and app.detail.loaded, "the run")
        tree = app.screen.query_one(NodeTree)
        await until(pilot, lambda: len(tree.paths) == 102, "every node")
        (group,) = tree.group_lines
        assert str(group.label) == "child_job ×50 — 45 ✓ 3 ▶ 2 ✗"
        assert not group.is_expanded and len(group.children) == 50
        assert [str(c.label).split(" child_job")[1].split(" ")[1] for c in group.children][:3] == ["succeeded", "#2", "#3"]
        assert all(len(c.children) == 1 for c in group.children)  # each call keeps its step
        assert len(app.screen.query_one(NodeTree).root.children[0].children) == 2  # prepare + the group
        assert GROUP_AT <= 50
        app.detail.apply(ev.NodeFinished(run_id=r, seq=10_000, ts=t + 99, node=f"{g}/child_job#50"))
        await until(pilot, lambda: str(group.label) == "child_job ×50 — 46 ✓ 2 ▶ 2 ✗", "the group's count moves")

    drive(app, scenario, size=(120, 40))


def test_a_long_runs_whole_log_pages_in_as_you_scroll_up(home):
    """More lines than the dashboard keeps in memory: the top of the view reads the page
    before it from the run's log, keeping the reader's place, until the run's first line."""
    from aethergraph.tui.state import RunModel
    from aethergraph.tui.widgets.lineview import LineView

    layout = StoreLayout.at(home).ensure()
    r, t, g = "20250108-000000-d0d0d0", support.T0 + 6 * 86400, "chatty"
    n = RunModel.MAX_LOG + 7000
    events = [ev.RunStarted(run_id=r, ts=t, graph=g, pid=1, host="elsewhere")]
    events += [ev.Log(run_id=r, ts=t + i * 0.001, node=g, level="info", message=f"line {i}") for i in range(n)]
    events.append(ev.RunFinished(run_id=r, ts=t + 100, status="succeeded", duration_s=100))
    support.write_log(layout, r, events)
    app = AetherGraphApp()

    async def scenario(pilot):
        app.open_run(r)
        await until(pilot, lambda: app.detail and app.detail.loaded, "the run", timeout=30)
        await pilot.press("l", "tab")
        view = app.screen.query_one("#log-log", LineView)
        status = app.screen.query_one("#view-status", Static)
        await until(pilot, lambda: len(view.items) == RunModel.MAX_LOG, "the newest lines")
        assert "7,000 earlier" in static_text(status)
        await pilot.press("g")  # the top: the page before is read
        await until(pilot, lambda: len(view.items) == RunModel.MAX_LOG + 5000, "one page more")
        assert view.scroll_y == 5000  # the same line under the reader's eyes
        assert view.text_of(view.items[5000]).plain.endswith("line 7000")
        await pilot.press("g")
        await until(pilot, lambda: len(view.items) == n, "the rest")
        assert view.text_of(view.items[0]).plain.endswith("line 0")
        assert "earlier" not in static_text(status)

    drive(app, scenario, size=(100, 30))


def test_runs_status_filter_sort_and_relative_times_and_asks_show_graph_and_full_ids(home):
    build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: table_keys(app, "runs-table"), "runs")
        await pilot.press("slash", *"status:failed", "enter")
        assert table_keys(app, "runs-table") == [RUN_FAILED]
        await pilot.press("slash", "escape", "s")  # by severity: FAILED first
        assert table_keys(app, "runs-table") == [RUN_FAILED, RUN_INTERRUPTED, RUN_CANCELLED, RUN_OK]
        await pilot.press("s")  # by duration, longest first
        assert table_keys(app, "runs-table")[0] == RUN_CANCELLED  # 5 s
        await pilot.press("s", "s")  # back to newest first
        assert table_keys(app, "runs-table") == [RUN_CANCELLED, RUN_INTERRUPTED, RUN_FAILED, RUN_OK]
        await pilot.press("T")
        table = app.screen.query_one("#runs-table", DataTable)
        assert str(table.get_cell(RUN_OK, "started")).endswith("d ago")
        await pilot.press("3")
        await until(pilot, lambda: table_keys(app, "asks-table"), "the inbox")
        asks = app.screen.query_one("#asks-table", DataTable)
        assert str(asks.get_cell(ASK_OFFLINE, "run")) == RUN_INTERRUPTED  # whole, at 120 columns
        assert str(asks.get_cell(ASK_OFFLINE, "graph")) == "tui_resuma…"

    drive(app, scenario, size=(120, 30))


def test_ag_tui_run_refuses_a_bad_typed_input_and_a_too_deep_one_before_starting(tmp_path):
    """`ag tui --run` checks inputs as `ag run` does: a typed field that does not fit, or an
    --input nested past what can be read, is one line naming the problem, exit 2, and no
    dashboard (nor store) is started."""
    from .conftest import ag
    from .test_typed_inputs import GOOD, PLAN_FILE

    (tmp_path / "plan.py").write_text(PLAN_FILE)
    bad = {**GOOD, "spec": {**GOOD["spec"], "mode": "reckless"}}
    deep = '{"spec": ' + "[" * 5000 + "]" * 5000 + ', "note": 1}'
    for text, message in ((json.dumps(bad), "ag: inputs do not fit plan: spec.mode"),
                          (deep, "ag: ")):
        out = ag("tui", "--run", "plan.py:plan", "--input", text, cwd=tmp_path, timeout=60)
        assert out.returncode == 2, out.stderr
        (line,) = out.stderr.splitlines()
        assert line.startswith(message) and "Traceback" not in line, line
    assert ag("runs", "--json", cwd=tmp_path).returncode == 2  # no store: nothing ran


def test_a_stream_grows_in_run_detail_and_a_files_ask_opens_the_file_picker(home, tmp_path, monkeypatch):
    """The streams and files hook-ups, driven by keys against a hosted run: while the run's
    stream is open (it waits on a files ask mid-stream), run detail's messages tab shows the
    text said so far, its control characters inert; enter on the files ask in the inbox opens
    the file picker (not the text dialog), a typed path answers it, and the toast says the
    file by name and size, not the stored answer's JSON."""
    from aethergraph import graph_fn
    from aethergraph.tui.screens.file_picker import FilePickerModal
    from aethergraph.tui.widgets.stream import StreamPanel

    @graph_fn(name="talk_then_files")
    async def talk_then_files(*, context) -> dict:
        ch = context.channel()
        async with ch.stream() as s:
            await s.delta("Hello \x1b]0;pwned\x07 wor")
            ref = await ch.ask_files("Which CSV?", accept=["*.csv"])
            await s.delta("ld")
        return {"text": await context.artifacts().load_text(ref)}

    pick = tmp_path / "pick"
    pick.mkdir()
    (pick / "data.csv").write_text("x,y\n")
    monkeypatch.chdir(pick)  # the picker's tree starts where the dashboard runs
    app = AetherGraphApp(poll_s=0.2, run=talk_then_files)
    notes = Notes(app)

    async def scenario(pilot):
        (ask,) = await until(pilot, lambda: [a for a in app.state.asks.values() if a.kind == "files"],
                             "the files ask")
        app.open_run(ask.run_id)
        await until(pilot, lambda: app.detail is not None and app.detail.loaded, "the run's log")
        await pilot.press("m")
        panel = app.screen.query_one(StreamPanel)
        await until(pilot, lambda: "Hello" in str(panel.render()), "the open stream shown")
        shown = str(panel.render())
        assert "␛]0;pwned␇ wor" in shown and "\x1b" not in shown, shown
        await pilot.press("3")
        await until(pilot, lambda: table_keys(app, "asks-table") == [ask.ask_id], "the inbox")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, FilePickerModal), "the file picker")
        app.screen.query_one("#files-input", Input).focus()
        await pilot.press(*"data.csv", "enter")
        await until(pilot, lambda: app.hosted_result is not None, "the hosted run's end")
        await until(pilot, lambda: f"answered {ask.ask_id}: data.csv (4 bytes)" in notes.text(),
                    "the answer, by name and size")

    drive(app, scenario)
    assert app.hosted_result.status == "succeeded", app.hosted_result.error
    events = read_events(StoreLayout(home).run_log(app.hosted_result.run_id))
    assert [e for e in events if isinstance(e, ev.RunFinished)][-1].outputs == {"text": "x,y\n"}
    (said,) = [e for e in events if isinstance(e, ev.MessageSent) and e.kind == "stream"]
    assert said.text == "Hello \x1b]0;pwned\x07 world"  # what the run said, kept as it said it


def test_help_and_back_leave_the_panel_footer_as_drawn(home):
    """`?` then esc shows the same keys on the panel's footer as before: it is not rebuilt
    (rebuilding every key widget was the slowest key under a streaming run, bench B8)."""
    build_store(home)
    app = AetherGraphApp()

    async def scenario(pilot):
        await until(pilot, lambda: app.state.index_loaded, "the index")
        await pilot.press("5")
        await pilot.pause(0.2)
        panel = app.screen
        footer = panel.query_one("Footer")
        rebuilds = []
        original = footer.recompose

        async def counted():
            rebuilds.append(1)
            await original()

        footer.recompose = counted
        keys_before = [k.key for k in footer.query("FooterKey")]
        for _ in range(3):
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert app.screen is panel
        await pilot.pause(0.2)
        assert [k.key for k in footer.query("FooterKey")] == keys_before and "question_mark" in keys_before
        assert rebuilds == []

    drive(app, scenario)
