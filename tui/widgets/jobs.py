"""The Jobs tab of run detail: a run's process jobs, their state live, and a followed log tail.

Rows come from the index (what the run recorded: ``job_submitted`` / ``job_state``); a job not
yet ended there is read from its folder, which its supervisor keeps current even when no runtime
is alive. The selected job's output is followed from ``jobs/<job_id>/stdout`` (only the bytes
added since the last look). ``c`` (confirmed first) cancels the selected job through its supervisor — SIGTERM to
its process group, SIGKILL after its grace — whichever process started it: the panel posts
``CancelJobRequested`` and the app's actions confirm it and run ``cancel_job``.

All reads run in a thread worker that posts what it read; the UI thread only draws.

Hooking it into run detail (two lines in ``RunDetailScreen``):

    with TabPane("Jobs", id="jobs"):                      # compose_body, with the other panes
        yield JobsPanel(self.app.home, id="jobs-panel")
    self.query_one(JobsPanel).show_run(run_id)            # sync(), when the shown run changes
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, RichLog, Static
from textual.worker import get_current_worker

from aethergraph.runtime.jobs.control import request_cancel, wait_terminal
from aethergraph.runtime.jobs.store import JobStore
from aethergraph.runtime.store.index import Index, job_rows
from aethergraph.runtime.store.layout import StoreLayout

from ..format import clip, dur, one_line
from ..messages import CancelJobRequested

TERMINAL = ("succeeded", "failed", "cancelled", "lost")
STATE_STYLE = {"queued": "dim", "running": "bold cyan", "succeeded": "green", "failed": "bold red",
               "cancelled": "yellow", "lost": "bold magenta"}
TAIL_LINES = 200
REFRESH_S = 0.5


def _elapsed(row: dict, now: float) -> str:
    start = row.get("started")
    if start is None:
        return "-"
    return dur((row.get("ended") or now) - start)


def _printable(text: str, width: int = 60) -> str:
    """A job's text is untrusted: its control characters shown (ESC as ␛), never obeyed."""
    return clip(text, width)


def cancel_job(home: str | Path, job_id: str) -> str:
    """Cancel a job through its supervisor and wait for its end; what became of it, in words."""
    store = JobStore(StoreLayout.at(home).home)
    st = store.read(job_id)
    if st.terminal and st.state.value != "lost":
        return f"job {job_id} already ended: {st.state.value}"
    request_cancel(store, job_id, by="dashboard")
    st = wait_terminal(store, job_id, store.read_spec(job_id).grace_s + 5)
    return f"job {job_id} {st.state.value}"


class JobsReader:
    """What the panel reads, off the UI thread (one index connection, opened when needed)."""

    def __init__(self, home: str | Path) -> None:
        self.layout = StoreLayout.at(home)
        self.store = JobStore(self.layout.home)
        self._index: Any = None
        self._offsets: dict[str, int] = {}

    def rows(self, run_id: str) -> list[dict]:
        if not self.layout.index_path.exists():
            return []
        if self._index is None:
            self._index = Index(self.layout)
        rows = job_rows(self._index, run_id=run_id)
        for r in rows:
            if r["state"] not in TERMINAL:
                try:
                    st = self.store.read(r["job_id"])
                except Exception:
                    continue
                r.update(state=st.state.value, started=st.started, ended=st.ended,
                         exit_code=st.exit_code, error=st.error)
        return rows

    def new_output(self, job_id: str) -> tuple[list[str], bool]:
        """Lines written since the last call for this job (the last ``TAIL_LINES`` on the first),
        and whether this is a fresh start (the log should be cleared)."""
        path = self.store.output_path(job_id)
        first = job_id not in self._offsets
        if first:
            self._offsets = {job_id: 0}  # follow one job at a time
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return [], True
            lines = self.store.tail(job_id, TAIL_LINES)
            self._offsets[job_id] = size
            return lines, True
        offset = self._offsets[job_id]
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(1 << 20)
        except FileNotFoundError:
            return [], False
        cut = data.rfind(b"\n") + 1  # whole lines only; the rest next time
        self._offsets[job_id] = offset + cut
        return data[:cut].decode("utf-8", "replace").splitlines(), False

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


class JobsPanel(Vertical):
    DEFAULT_CSS = """
    JobsPanel { height: 1fr; }
    JobsPanel > DataTable { height: auto; max-height: 40%; }
    JobsPanel > #jobs-title { height: 1; color: $text-muted; }
    JobsPanel > RichLog { height: 1fr; }
    """
    BINDINGS = [Binding("c", "cancel_job", "Cancel job")]

    @dataclass
    class Read(Message, bubble=False):
        """One look at the run's jobs: the rows, the followed job and its new output lines
        (``fresh``: from the start), or ``error``."""

        run_id: str
        rows: list[dict] = field(default_factory=list)
        follow: str | None = None
        lines: list[str] = field(default_factory=list)
        fresh: bool = False
        error: str = ""

    def __init__(self, home: str | Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.reader = JobsReader(home)
        self.run_id: str | None = None
        self.rows: list[dict] = []
        self.followed: str | None = None
        self._busy = False

    def compose(self) -> ComposeResult:
        table = DataTable(id="jobs-table", cursor_type="row", zebra_stripes=False)
        table.add_columns("JOB", "STATE", "EXIT", "ELAPSED", "NODE", "COMMAND")
        yield table
        yield Static("", id="jobs-title", markup=False)
        yield RichLog(id="jobs-log", max_lines=2000, wrap=False, min_width=20)

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self.refresh_jobs)

    def on_unmount(self) -> None:
        self.reader.close()

    def show_run(self, run_id: str | None) -> None:
        if run_id != self.run_id:
            self.run_id = run_id
            self.rows = []
            self.followed = None
            self.query_one(DataTable).clear()
            self.query_one(RichLog).clear()
            self.refresh_jobs()

    @property
    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]["job_id"]

    # -- reading (thread) and drawing (UI) ----------------------------------------------------------

    def refresh_jobs(self) -> None:
        # Read only while the panel is on screen (run detail keeps it mounted on a hidden tab:
        # no reason to poll the index and the job folders twice a second for nobody).
        if self.run_id is not None and not self._busy and self.region.area:
            self._busy = True
            self._read(self.run_id, self.selected or self.followed)

    @work(thread=True, exclusive=True, group="jobs-read")
    def _read(self, run_id: str, want: str | None) -> None:
        try:
            rows = self.reader.rows(run_id)
            follow = want if any(r["job_id"] == want for r in rows) else (rows[0]["job_id"] if rows else None)
            lines, fresh = self.reader.new_output(follow) if follow else ([], False)
            read = self.Read(run_id, rows, follow, lines, fresh)
        except Exception as exc:  # a store being rebuilt, a torn file: say so, try again later
            read = self.Read(run_id, error=str(exc))
        if not get_current_worker().is_cancelled:  # (cancelled: the panel is closing)
            self.post_message(read)

    def on_jobs_panel_read(self, msg: Read) -> None:
        self._busy = False
        if msg.error:
            self.query_one("#jobs-title", Static).update(_printable(f"cannot read jobs: {msg.error}", 200))
            return
        run_id, rows, follow, lines, fresh = msg.run_id, msg.rows, msg.follow, msg.lines, msg.fresh
        if run_id != self.run_id:
            return
        table = self.query_one(DataTable)
        now = time.time()
        keep = self.selected
        if [r["job_id"] for r in rows] != [r["job_id"] for r in self.rows]:
            table.clear()
            for r in rows:
                table.add_row(*self._cells(r, now), key=r["job_id"])
            if keep is not None:
                for i, r in enumerate(rows):
                    if r["job_id"] == keep:
                        table.move_cursor(row=i)
        else:
            for r in rows:
                for col, value in zip(table.columns, self._cells(r, now)):
                    table.update_cell(r["job_id"], col, value, update_width=True)  # RUNNING → CANCELLED
        self.rows = rows
        log = self.query_one(RichLog)
        if follow != self.followed or fresh:
            log.clear()
        self.followed = follow
        for line in lines:  # a job's output is untrusted: no escape sequence reaches the terminal
            log.write(Text(one_line(line)), scroll_end=True)
        row = next((r for r in rows if r["job_id"] == follow), None)
        title = "no jobs in this run" if row is None else f"{follow} · stdout"
        if row is not None and row["error"]:
            title += f" · {row['error'].splitlines()[0]}"
        self.query_one("#jobs-title", Static).update(_printable(title, 200))

    @staticmethod
    def _cells(r: dict, now: float) -> list[Any]:
        state = r["state"]
        return [
            one_line(r["job_id"]),
            Text(one_line(state.upper()), style=STATE_STYLE.get(state, "")),
            "" if r["exit_code"] is None else str(r["exit_code"]),
            _elapsed(r, now),
            _printable(r["node"], 30),
            _printable(r["name"] or " ".join(r["argv"]), 50),
        ]

    # -- cancel ---------------------------------------------------------------------------------

    def action_cancel_job(self) -> None:
        job_id = self.selected
        if job_id is None:
            self.app.notify("no job selected", severity="warning")
            return
        row = next((r for r in self.rows if r["job_id"] == job_id), None)
        # Like every action of the dashboard, it is confirmed first (actions.py), naming what.
        self.post_message(CancelJobRequested(job_id, "" if row is None else (row["name"] or " ".join(row["argv"]))))
