"""The dashboard's Jobs panel, driven by keys (Textual's Pilot) against a real run in another
process, real jobs and a real store."""

from __future__ import annotations

import json

from textual.app import App, ComposeResult
from textual.widgets import DataTable, RichLog

from aethergraph.runtime.jobs.store import JobStore, group_members
from aethergraph.tui.actions import Actions
from aethergraph.tui.screens.confirm import ConfirmModal
from aethergraph.tui.widgets.jobs import JobsPanel

from .test_jobs import start_forker_run
from .test_tui_support import Notes, drive, until


class JobsApp(Actions, App):
    """The panel alone; ``Actions`` confirms and performs what it asks for (c), as in the
    dashboard."""

    def __init__(self, home, run_id: str) -> None:
        super().__init__()
        self.home, self.run_id = home, run_id

    def compose(self) -> ComposeResult:
        yield JobsPanel(self.home, id="jobs-panel")

    def on_mount(self) -> None:
        panel = self.query_one(JobsPanel)
        panel.show_run(self.run_id)
        panel.query_one(DataTable).focus()


def test_jobs_panel_follows_a_job_and_cancels_it_with_c(tmp_path, home, spawn_ag):
    runtime, store, job_id = start_forker_run(spawn_ag, tmp_path, home, "--json")
    try:
        run_id = store.read(job_id).run_id or store.read_record(job_id).run_id
        app = JobsApp(home, run_id)
        notes = Notes(app)

        async def scenario(pilot):
            panel = app.query_one(JobsPanel)
            table = panel.query_one(DataTable)
            log = panel.query_one(RichLog)
            await until(pilot, lambda: panel.rows and panel.rows[0]["state"] == "running", "a RUNNING row")
            assert table.row_count == 1 and str(table.get_row_at(0)[1]) == "RUNNING"
            await until(pilot, lambda: any(s.text == "ready" for s in log.lines), "the job's output, followed")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: f"job {job_id} cancelled" in notes.text(), "the cancel")
            await until(pilot, lambda: panel.rows[0]["state"] == "cancelled", "the CANCELLED row")
            assert str(table.get_row_at(0)[1]) == "CANCELLED"

        drive(app, scenario)
        out, err = runtime.communicate(timeout=60)
    finally:
        if runtime.poll() is None:
            runtime.kill()
    st = store.read(job_id)
    assert st.cancelled_by == "dashboard" and group_members(st.pid) == []
    assert json.loads(out.strip().splitlines()[-1])["outputs"]["state"] == "cancelled", err


def test_dashboard_shows_a_runs_jobs_and_J_then_c_cancels_one(tmp_path, home, spawn_ag):
    """The hook-up in the dashboard itself: the runs list counts the run's jobs (JOBS), J on run
    detail opens its Jobs tab with the job's table focused, and c there (confirmed) cancels the job — not the
    run (which then ends on its own, reporting the job cancelled)."""
    from textual.widgets import TabbedContent

    from aethergraph.tui.app import AetherGraphApp

    runtime, store, job_id = start_forker_run(spawn_ag, tmp_path, home, "--json")
    try:
        run_id = store.read(job_id).run_id or store.read_record(job_id).run_id
        app = AetherGraphApp(home, poll_s=0.2, index_s=0.2)
        notes = Notes(app)

        async def scenario(pilot):
            await until(pilot, lambda: run_id in app.state.runs and app.state.runs[run_id].jobs == 1,
                        "the run's job counted from the index")
            table = app.screen.query_one("#runs-table", DataTable)
            await until(pilot, lambda: table.row_count and str(table.get_cell(run_id, "jobs")) == "1",
                        "JOBS 1 on the runs list")
            table.move_cursor(row=table.get_row_index(run_id))
            await pilot.press("enter")
            await until(pilot, lambda: app.detail is not None and app.detail.loaded, "the run opened")
            await pilot.press("J")
            assert app.screen.query_one("#run-tabs", TabbedContent).active == "jobs"
            panel = app.screen.query_one(JobsPanel)
            assert app.focused is panel.query_one(DataTable)
            await until(pilot, lambda: panel.rows and panel.rows[0]["state"] == "running", "the job RUNNING")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: f"job {job_id} cancelled" in notes.text(), "the cancel")
            await until(pilot, lambda: panel.rows[0]["state"] == "cancelled", "the CANCELLED row")
            assert not any("cancel run" in t.casefold() for t, _ in notes.items)

        drive(app, scenario)
        out, err = runtime.communicate(timeout=60)
    finally:
        if runtime.poll() is None:
            runtime.kill()
    assert runtime.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["outputs"]["state"] == "cancelled", err
