"""Panel 4 — Memory: query what runs recorded, across runs, and read one event in full.

One query line, k9s-style: ``kind:job_failed tag:demo entity:acme run:ID since:2h words``. The
index answers it (newest first) in a worker thread; the highlighted event is shown as pretty
JSON below the list.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.json import JSON
from rich.text import Text
from textual import work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from ..format import clip, plain, short, short_when, visible
from ..messages import OpenRun
from ..store import MemoryQuery, event_json
from ..widgets import RowTable
from .base import ListScreen

LIMIT = 200


class MemoryScreen(ListScreen):
    MODE = "memory"
    TABLE = "memory-table"
    HELP = ("Query memory: kind:K tag:T entity:E run:ID graph:G node:PATH since:2h until:1h and "
            "free words (full text). Enter runs the query; the highlighted event shows below.")
    BINDINGS = [
        Binding("slash", "focus_query", "Query"),
        Binding("escape", "leave_query", "Back", show=False),
        Binding("o", "open_run", "Open run"),
    ]
    COLUMNS = (("time", "TIME", 12), ("run", "RUN", 14), ("kind", "KIND", 16), ("tags", "TAGS", 12),
               ("data", "DATA", 0))

    @dataclass
    class Found(Message, bubble=False):
        """A query's answer (``error``: why there is none), from the worker that asked."""

        events: list
        line: str
        error: str = ""

    def __init__(self) -> None:
        super().__init__()
        self._events: dict[str, object] = {}

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="kind:K tag:T entity:E run:ID since:2h words…  (enter)", id="memory-query",
                    compact=True)
        yield RowTable("memory-table", self.COLUMNS)
        with VerticalScroll(id="memory-detail"):
            yield Static("", id="memory-json")
        yield Static("", id="memory-status", markup=False)

    def rows_changed(self) -> None:
        self.run_query()  # (again: the data column is clipped to the new width)

    def sync(self, force: bool = False) -> None:
        # Results are a query's answer, not a live view: they change when the person asks.
        return

    # -- querying -------------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "memory-query":
            self.run_query()
            self.table.focus()

    def run_query(self) -> None:
        line = self.query_one("#memory-query", Input).value
        try:
            query = MemoryQuery.parse(line)
        except ValueError as exc:
            self.query_one("#memory-status", Static).update(f"✗ {exc}", layout=False)
            return
        self.query_one("#memory-status", Static).update("searching…", layout=False)
        self._search(query, line)

    @work(thread=True, exclusive=True, group="memory")
    def _search(self, query: MemoryQuery, line: str) -> None:
        try:
            events = self.dash.store.memory(query, limit=LIMIT)
            error = ""
        except Exception as exc:  # a malformed full-text query, a locked index…
            events, error = [], f"✗ {type(exc).__name__}: {exc}"
        if not get_current_worker().is_cancelled:  # (a newer query replaced this one)
            self.post_message(self.Found(events, line, error))

    def on_memory_screen_found(self, msg: Found) -> None:
        events, line, error = msg.events, msg.line, msg.error
        table = self.table
        data_w = table.width_of("data")
        table.clear()
        self._events = {}
        for i, e in enumerate(events):
            key = f"{i}:{e.event_id}"
            self._events[key] = e
            table.add_row(short_when(e.ts), plain(e.run_id[-13:]), Text(clip(e.kind, 15)),
                          Text(clip(",".join(e.tags), 11)),
                          Text(short(e.data if e.data is not None else e.text, data_w - 1)), key=key)
        status = self.query_one("#memory-status", Static)
        if error:
            status.update(visible(error), layout=False)
        elif not events:
            status.update(f"no memory events match {line!r}" if line.strip() else "no memory recorded yet",
                          layout=False)
            self.query_one("#memory-json", Static).update("")
        else:
            more = f" (first {LIMIT})" if len(events) >= LIMIT else ""
            status.update(f"{len(events)} events{more}, newest first · {line.strip() or 'all'}", layout=False)
            self._detail(next(iter(self._events)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value:
            self._detail(event.row_key.value)

    def event_for(self, key: str) -> object | None:
        """The memory event listed under row ``key`` (None once the list moved on)."""
        return self._events.get(key)

    def _detail(self, key: str) -> None:
        e = self._events.get(key)
        if e is not None:
            self.query_one("#memory-json", Static).update(JSON(event_json(e)))

    # -- keys -----------------------------------------------------------------------------------

    def action_focus_query(self) -> None:
        self.query_one("#memory-query", Input).focus()

    def action_leave_query(self) -> None:
        if self.focused is self.query_one("#memory-query", Input):
            self.table.focus()
            return
        raise SkipAction()

    def _selected(self):
        key = self.table.selected_key()
        return self._events.get(key) if key else None

    def yank_target(self) -> tuple[str, str] | None:
        e = self._selected()
        return ("memory event id", e.event_id) if e is not None else None

    def action_open_run(self) -> None:
        e = self._selected()
        self.request(OpenRun, e and e.run_id)

