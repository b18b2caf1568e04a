"""Panel 1 — Runs: every run in the store, newest first, live ones ticking.

History comes from the index a page at a time (never the logs: a store of ten thousand runs
paints as fast as one of ten), live state from the sidecars. Scrolling to the end loads the
next page; ``/`` filters by id, graph or status as you type.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from aethergraph.runtime import events as ev

from ..format import ago, clip, dur, plain, short_when, status_text
from ..messages import CancelRequested, MoreRunsRequested, OpenRun, ResumeRequested
from ..widgets import FilterInput, RunsTable
from .base import ListScreen

# Rows put in the table at first; it grows by a step as the cursor nears the end. A run that
# starts rebuilds the table, so the table holds what the person scrolled to, not the store.
MAX_ROWS = 1000
WINDOW_STEP = 1000
# s sorts by one of these; a state's place in the severity order (the colours follow it too).
SEVERITY = {ev.FAILED: 0, ev.TIMED_OUT: 1, ev.INTERRUPTED: 2, ev.CANCELLED: 3, ev.RUNNING: 4, ev.SUCCEEDED: 5}
SORT_NAMES = {"started": "start time (newest first)", "status": "state (most severe first)",
              "duration": "duration (longest first)", "graph": "graph"}


class RunsScreen(ListScreen):
    MODE = "runs"
    TABLE, FILTER = "runs-table", "runs-filter"
    HELP = ("Every run in the store, newest first. Live runs update as they go; INTERRUPTED means its "
            "process died before it finished (R resumes it).")
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("R", "resume_run", "Resume"),
        Binding("s", "sort", "Sort"),
        Binding("T", "relative", "Relative/absolute times", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    # (key, header, width incl. a one-column gap); the graph takes what is left.
    COLUMNS = (("run", "RUN", 23), ("graph", "GRAPH", 0), ("status", "STATUS", 12),
               ("started", "STARTED", 12), ("duration", "DURATION", 9), ("jobs", "JOBS", 5),
               ("asks", "ASKS", 4))

    def __init__(self) -> None:
        super().__init__()
        self._drawn: tuple | None = None
        self._drawn_second = 0
        self._running_rows: list[str] = []
        self._window = MAX_ROWS
        self._sort = "started"
        self._relative = False
        self._shown = self._matching = 0
        self._fills = 0  # how many times the rows were put in (``_add_rest`` checks it)
        self._rest = 0  # rows of the page still to add after the frame being drawn

    def compose_body(self) -> ComposeResult:
        yield FilterInput("filter: words, status:failed, graph:NAME (esc clears)", id="runs-filter")
        yield RunsTable("runs-table", self.COLUMNS, flex_min=8)
        yield Static("", id="runs-status", markup=False)

    # -- drawing --------------------------------------------------------------------------------

    def _matches(self, row) -> bool:
        """``/`` filter: ``status:failed`` (or ``status:fail``), ``graph:NAME``, and words that
        must each be in the id, the graph or the status."""
        f = self.filter
        if not f:
            return True
        for word in f.split():
            key, sep, value = word.partition(":")
            if sep and key == "status":
                if not row.status.startswith(value):
                    return False
            elif sep and key == "graph":
                if value not in row.graph.casefold():
                    return False
            elif word not in row.run_id.casefold() and word not in row.graph.casefold() and word not in row.status:
                return False
        return True

    def _sorted(self, ids: list[str]) -> list[str]:
        """The runs in the order ``s`` chose: newest first (the index's order), or by the
        severity of their state, their duration or their graph (each newest first within)."""
        st = self.dash.state
        if self._sort == "started":
            return ids
        now = time.time()
        if self._sort == "status":
            return sorted(ids, key=lambda k: SEVERITY.get(st.runs[k].status, 9))
        if self._sort == "duration":
            return sorted(ids, key=lambda k: -(st.runs[k].duration(now) or 0.0))
        return sorted(ids, key=lambda k: st.runs[k].graph.casefold())

    def sync(self, force: bool = False) -> None:
        if not self.is_mounted or not self.table.laid_out_width:
            return
        st = self.dash.state
        key = (st.runs_version, st.asks_version, self.filter, self.table.laid_out_width, self._window,
               self._sort, self._relative)
        now = time.time()
        if force or key != self._drawn:
            self._drawn = key
            self._redraw(now)
        elif int(now) != self._drawn_second:
            self._tick_durations(now)
        self._drawn_second = int(now)

    def _cells(self, row, now: float, graph_w: int) -> list:
        st = self.dash.state
        asks = st.pending_for(row)
        return [
            plain(row.run_id),
            Text(clip(row.graph, graph_w - 1)),
            status_text(row.status),
            ago(row.started, now) if self._relative else short_when(row.started, now),
            dur(row.duration(now)),
            str(row.jobs) if row.jobs else "",
            Text(str(asks), style="bold reverse") if asks else "",
        ]

    def _redraw(self, now: float) -> None:
        st = self.dash.state
        table = self.table
        keep = table.selected_key()
        was_at = table.cursor_row
        scrolled = table.scroll_y
        rows = [st.runs[k] for k in self._sorted(st.ordered()) if self._matches(st.runs[k])]
        shown = rows[:self._window]
        self._running_rows = []
        graph_w = table.width_of("graph")
        now_rows = shown
        if table.row_count == 0 and len(shown) > table.size.height:
            # An empty table (the first page: what the first screen waits for) gets the rows
            # that fit on screen now and the rest of the page just after that frame: Textual
            # measures every cell of a new row before the next frame (~2 ms a row), which for
            # the 200 rows of a page was a fifth of the first paint.
            now_rows = shown[:table.size.height]
        table.clear()
        self._fills += 1  # (a fill still pending for an older redraw must not add its rows)
        self._add_rows(now_rows, now, graph_w)
        self._rest = len(shown) - len(now_rows)
        if self._rest:
            self.call_after_refresh(self._add_rest, self._fills, shown[len(now_rows):], now, graph_w)
        table.restore_cursor(keep)
        if keep is not None and scrolled > 0 and table.cursor_row != was_at:
            # Runs started above a cursor deep in the list: keep it where it was on screen
            # (the list moves under it) instead of letting the new rows push it out of view.
            table.scroll_to(y=scrolled + table.cursor_row - was_at, animate=False, immediate=True)
        elif scrolled > 0:
            table.scroll_to(y=scrolled, animate=False, immediate=True)
        self._shown, self._matching = len(shown), len(rows)
        self._status_line(len(shown), len(rows), len(st.runs))

    def _add_rows(self, rows: list, now: float, graph_w: int) -> None:
        table = self.table
        for r in rows:
            table.add_row(*self._cells(r, now, graph_w), key=r.run_id)
            if r.status == ev.RUNNING:
                self._running_rows.append(r.run_id)

    def _add_rest(self, fill: int, rows: list, now: float, graph_w: int) -> None:
        """The rest of a page ``_redraw`` put only the first screen of (unless the table was
        drawn again since)."""
        if fill == self._fills and self.is_mounted:
            self._rest = 0
            self._add_rows(rows, now, graph_w)

    def _tick_durations(self, now: float) -> None:
        st = self.dash.state
        table = self.table
        for run_id in self._running_rows:
            row = st.runs.get(run_id)
            if row is not None:
                try:
                    table.update_cell(run_id, "duration", dur(row.duration(now)))
                except Exception:
                    pass

    def _status_line(self, shown: int, matching: int, loaded: int) -> None:
        st = self.dash.state
        status = self.query_one("#runs-status", Static)
        home = self.dash.home_label
        if st.store_missing:
            status.update(f"No store at {home} yet; waiting for the first run.", layout=False)
            return
        if not st.index_loaded and not loaded:
            status.update("Reading the index…", layout=False)
            return
        if not loaded:
            status.update(f"No runs yet in {home}. Start one: ag run FILE.py:FN (or ag tui --run …)", layout=False)
            return
        total = max(st.index_total, loaded)
        if self.filter:
            parts = [f"{shown} of {matching} matching", f"{loaded:,} of {total:,} runs searched"]
        else:
            parts = [f"{shown:,} of {total:,} runs"]
        if shown < matching or st.index_has_more:
            parts.append("older: scroll to the end" if not st.loading_older else "reading older runs…")
        if self._sort != "started":
            parts.append(f"sorted by {self._sort} (s)")
        parts.append(home)
        status.update(" · ".join(parts), layout=False)

    # -- filter (the rest is ListScreen's) ------------------------------------------------------

    def action_filter(self) -> None:
        super().action_filter()
        if self.dash.state.index_has_more:  # a filter searches every run, not the first page
            self.post_message(MoreRunsRequested(everything=True))

    # -- rows -----------------------------------------------------------------------------------

    def action_sort(self) -> None:
        order = ("started", "status", "duration", "graph")
        self._sort = order[(order.index(self._sort) + 1) % len(order)]
        self.notify(f"runs sorted by {SORT_NAMES[self._sort]}")
        self.redraw()

    def action_relative(self) -> None:
        self._relative = not self._relative
        self.redraw()

    def yank_target(self) -> tuple[str, str] | None:
        run_id = self.selected_run()
        return ("run id", run_id) if run_id else None

    def selected_run(self) -> str | None:
        return self.table.selected_key()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.request(OpenRun, event.row_key.value)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if self._rest or event.cursor_row < table.row_count - 3:
            return  # (rows still to come after this frame: the cursor is not near the end)
        # Near the end: show more of what is loaded, or read the next page of older runs.
        if self._shown < self._matching:
            self._window += WINDOW_STEP
            self.redraw()
        elif self.dash.state.index_has_more:
            self.post_message(MoreRunsRequested())

    def action_open_run(self) -> None:
        self.request(OpenRun, self.selected_run())

    def action_cancel_run(self) -> None:
        self.request(CancelRequested, self.selected_run())

    def action_resume_run(self) -> None:
        self.request(ResumeRequested, self.selected_run())
