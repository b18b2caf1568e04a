"""Snapshots of the main panels at 80×24, from a store of fixed facts (tests/__snapshots__/).

The store is written event by event with fixed run ids and times (``build_store``), shown in
UTC, from a fixed working directory, so the pictures depend on nothing but the code. After a
deliberate change of the look: ``pytest tests/test_tui_snapshots.py --snapshot-update``, then
review the SVGs (``snapshot_report.html`` shows the differences when a test fails).
"""

from __future__ import annotations

import time

import pytest

from aethergraph.tui.app import AetherGraphApp

from .test_tui_support import RUN_OK, build_store, until

SIZE = (80, 24)


@pytest.fixture
def fixed_store(home, tmp_path, monkeypatch):
    build_store(home)
    monkeypatch.chdir(tmp_path)  # the store reads as "store" in the status line
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    yield home
    monkeypatch.undo()
    time.tzset()


async def _runs_loaded(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: app.state.index_loaded and app.first_paint_s is not None, "the index")
    await pilot.pause(0.2)


async def _run_opened(pilot, run_id: str):
    """The runs panel loaded, then ``run_id`` opened and its log read; the app."""
    app = pilot.app
    await _runs_loaded(pilot)
    app.open_run(run_id)
    await until(pilot, lambda: app.detail.loaded, "the run's log")
    return app


def test_runs_panel(fixed_store, snap_compare):
    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, run_before=_runs_loaded)


def test_run_detail_panel(fixed_store, snap_compare):
    async def open_run(pilot):
        app = await _run_opened(pilot, RUN_OK)
        await until(pilot, lambda: len(app.screen.query_one("#timeline-log").items), "the timeline")
        await pilot.pause(0.2)

    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, run_before=open_run)


def test_run_detail_metrics_tab(fixed_store, snap_compare):
    async def open_run(pilot):
        await _run_opened(pilot, RUN_OK)
        await pilot.press("M")
        await pilot.pause(0.2)

    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, run_before=open_run)


def test_asks_panel(fixed_store, snap_compare):
    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, press=["3"], run_before=_runs_loaded)


def test_answer_dialog(fixed_store, snap_compare):
    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, press=["3", "enter"], run_before=_runs_loaded)


def test_memory_panel(fixed_store, snap_compare):
    async def query(pilot):
        app = pilot.app
        await _runs_loaded(pilot)
        await pilot.press("4")
        await until(pilot, lambda: "events" in str(app.screen.query_one("#memory-status").render()), "results")

    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, run_before=query)


def test_artifacts_panel(fixed_store, snap_compare):
    async def preview(pilot):
        app = pilot.app
        await _runs_loaded(pilot)
        await pilot.press("5")
        await until(pilot, lambda: app.screen.preview[1], "the preview")

    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, run_before=preview)


def test_help(fixed_store, snap_compare):
    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, press=["question_mark"], run_before=_runs_loaded)


def test_confirmation(fixed_store, snap_compare):
    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, press=["down", "R"], run_before=_runs_loaded)


# -- issue 14: what the second pass looks like ------------------------------------------------------


def test_runs_panel_no_color(fixed_store, snap_compare, monkeypatch):
    """NO_COLOR: states by weight alone (FAILED a reversed block, INTERRUPTED bold underlined)."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, press=["down", "down", "down"],
                        run_before=_runs_loaded)


def test_failed_run_node_tab(fixed_store, snap_compare):
    """d on a failed run: why it failed."""
    from .test_tui_support import RUN_FAILED

    async def open_run(pilot):
        app = await _run_opened(pilot, RUN_FAILED)
        await pilot.press("d")
        await until(pilot, lambda: "failed nodes" in str(app.screen.query_one("#node-detail-body").render()),
                    "the node tab")
        await pilot.pause(0.2)

    assert snap_compare(AetherGraphApp(), terminal_size=SIZE, run_before=open_run)


def test_hostile_messages(home, tmp_path, monkeypatch, snap_compare):
    """A run's control sequences and markup, shown as text in its messages."""
    from . import test_tui_support
    from .test_tui_support import RUN_HOSTILE, build_hostile_store

    # The header names the run's host: the same name on every machine (its pid is dead here).
    monkeypatch.setattr("aethergraph.runtime.history.HOST", "snapshot-host")
    monkeypatch.setattr(test_tui_support, "HOST", "snapshot-host")
    build_hostile_store(home)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()

    async def open_run(pilot):
        app = pilot.app
        await until(pilot, lambda: app.state.index_loaded and app.first_paint_s is not None, "the index")
        app.open_run(RUN_HOSTILE)
        await until(pilot, lambda: app.detail.loaded, "the run's log")
        await pilot.press("m")
        await pilot.pause(0.3)

    try:
        assert snap_compare(AetherGraphApp(), terminal_size=SIZE, run_before=open_run)
    finally:
        monkeypatch.undo()
        time.tzset()
