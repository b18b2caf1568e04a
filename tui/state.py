"""What the dashboard knows, kept apart from how it is drawn.

Facts arrive from three places — the SQLite index (history, read in worker threads), the
sidecars of live runtimes (events, in trio tasks) and the run logs (a run's detail) — at very
different rates. They all land here, on the UI thread, as cheap updates that bump a version
counter; screens redraw from this state at most ten times a second, and only when a version
they show has moved. That is what keeps the UI answering keys while a run emits thousands of
events a second: applying an event costs microseconds, drawing happens once per tick.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from aethergraph.runtime import events as ev
from aethergraph.runtime.history import RunSummary, effective_status
from aethergraph.runtime.info import AskInfo, RunInfo, track_asks
from aethergraph.runtime.store.layout import StoreLayout

from .widgets.stream import StreamTexts

TERMINAL = ev.TERMINAL_STATES
NODE_ENDS = (ev.NodeFinished, ev.NodeFailed, ev.NodeCancelled, ev.NodeTimedOut)


class DashboardState:
    """Runs (``RunInfo``, by id) and open asks (``AskInfo``, by id: those of live runtimes, and
    those of interrupted runs, answerable into their logs), as the index and the live runtimes
    tell them."""

    PAGE = 200

    def __init__(self) -> None:
        self.runs: dict[str, RunInfo] = {}
        self.asks: dict[str, AskInfo] = {}
        self.offline_asks: dict[str, AskInfo] = {}
        self.runtimes: dict[str, Any] = {}  # runtime_id -> Advert
        self.live_runs: dict[str, str] = {}  # run_id -> runtime_id
        self.runs_version = 0
        self.asks_version = 0
        self.runtimes_version = 0
        self.index_limit = self.PAGE
        # The store (a StoreLayout), so a "running" run is checked against its owner lock.
        self.layout: Any = None
        # Paging the index: the newest page is re-read all the time; older pages are read once,
        # as the list is scrolled to its end, from the oldest row loaded so far (keyset).
        self.index_total = 0
        self.index_has_more = False
        self.oldest_key: tuple[float, str] | None = None
        self.loading_older = False
        self.index_loaded = False
        self.store_missing = False
        self._order: list[str] = []
        self._order_version = -1
        self._index_signature: tuple | None = None

    # -- history from the index ---------------------------------------------------------------

    def merge_index(self, rows: list[RunInfo], has_more: bool, *, total: int | None = None,
                    older: bool = False) -> None:
        """Rows from the index (newest first): its newest page, or (``older``) the page after
        the oldest row loaded so far. The index trails a live runtime by a few milliseconds, so
        a state we saw live that is newer (a terminal one) is kept.

        The newest page is read every couple of seconds; when it says nothing new (the usual
        case) nothing is marked changed, so nothing is redrawn."""
        statuses = [
            effective_status(r.status, r.host, r.run_id, self.layout)
            if r.status == ev.RUNNING and r.run_id not in self.live_runs else r.status
            for r in rows
        ]
        if rows and rows[-1].started is not None:
            key = (rows[-1].started, rows[-1].run_id)
            if self.oldest_key is None or key < self.oldest_key:
                self.oldest_key = key
                self.index_has_more = has_more
        elif not rows and older:
            self.index_has_more = False
        elif not older and self.oldest_key is None:
            self.index_has_more = has_more
        if total is not None and total != self.index_total:
            self.index_total = total
            self.runs_version += 1
        signature = (older, tuple(sorted(self.live_runs.items())), tuple(
            (r.run_id, status, r.last_seq, r.pending_asks, r.jobs) for r, status in zip(rows, statuses)))
        if not older:
            if signature == self._index_signature:
                return
            self._index_signature = signature
        for r, status in zip(rows, statuses):
            run_id = r.run_id
            row = self.runs.get(run_id)
            if row is None:
                row = self.runs[run_id] = RunInfo(run_id=run_id)
            elif row.status in TERMINAL and status not in TERMINAL and row.last_ts and (
                    r.last_ts or 0) <= row.last_ts:
                status = row.status  # we saw it end before the index did
            row.graph = r.graph or row.graph
            row.status = status
            row.started = r.started if r.started is not None else row.started
            row.finished = r.finished if r.finished is not None else row.finished
            row.last_ts = max(row.last_ts or 0.0, r.last_ts or 0.0) or None
            row.pending_asks = r.pending_asks
            row.attempt_of = r.attempt_of
            row.error = r.error
            row.jobs = r.jobs
            row.runtime_id = self.live_runs.get(run_id, "")
        self.index_loaded = True
        self.runs_version += 1

    def set_offline_asks(self, rows: list[AskInfo]) -> None:
        """Open asks of runs whose process died: answerable now, used when the run resumes."""
        fresh = {}
        for a in rows:
            run = self.runs.get(a.run_id)
            if run is None or run.status != ev.INTERRUPTED or a.run_id in self.live_runs:
                continue
            fresh[a.ask_id] = a
        if fresh.keys() != self.offline_asks.keys():
            self.offline_asks = fresh
            self.asks_version += 1

    # -- live runtimes ------------------------------------------------------------------------

    def attach(self, runtime_id: str, advert: Any, runs: list[RunInfo], asks: list[AskInfo]) -> None:
        self.runtimes[runtime_id] = advert
        self.runtimes_version += 1
        for info in runs:
            self.live_runs[info.run_id] = runtime_id
            row = self.runs.get(info.run_id)
            if row is None:
                row = self.runs[info.run_id] = RunInfo(run_id=info.run_id, graph=info.graph, started=info.started)
            row.status, row.finished, row.runtime_id = ev.RUNNING, None, runtime_id
        for a in asks:
            a.runtime_id = runtime_id
            self.asks[a.ask_id] = a
            self.offline_asks.pop(a.ask_id, None)
        self.runs_version += 1
        self.asks_version += 1

    def detach(self, runtime_id: str) -> None:
        if self.runtimes.pop(runtime_id, None) is not None:
            self.runtimes_version += 1
        for run_id, rid in list(self.live_runs.items()):
            if rid == runtime_id:
                del self.live_runs[run_id]
                row = self.runs.get(run_id)
                if row is not None:
                    row.runtime_id = ""
                    if row.status == ev.RUNNING:
                        # Gone without a run_finished: the index (next reload) says what it was.
                        row.status = ev.INTERRUPTED
        for ask_id, a in list(self.asks.items()):
            if a.runtime_id == runtime_id:
                del self.asks[ask_id]
        self.runs_version += 1
        self.asks_version += 1

    def apply(self, runtime_id: str, e: ev.Event) -> None:
        """One live event: only the facts the runs table and the inbox show."""
        t = type(e)
        if t is ev.RunStarted or t is ev.RunResumed:
            row = self.runs.get(e.run_id)
            if row is None:
                row = self.runs[e.run_id] = RunInfo(run_id=e.run_id)
            if t is ev.RunStarted:
                row.graph, row.started, row.attempt_of = e.graph, e.ts, e.attempt_of
            row.status, row.finished, row.error = ev.RUNNING, None, ""
            row.runtime_id = runtime_id
            row.last_ts = e.ts
            self.live_runs[e.run_id] = runtime_id
            self.runs_version += 1
        elif t is ev.RunFinished:
            row = self.runs.get(e.run_id)
            if row is not None:
                row.status, row.finished, row.last_ts = e.status, e.ts, e.ts
                row.error = str(e.error) if e.error else ""
                row.runtime_id = ""
                row.pending_asks = 0
            self.live_runs.pop(e.run_id, None)
            if track_asks(self.asks, e):  # its asks close with it
                self.asks_version += 1
            self.runs_version += 1
        elif t is ev.AskOpened:
            track_asks(self.asks, e, runtime_id)
            self.offline_asks.pop(e.ask_id, None)
            self.asks_version += 1
            self.runs_version += 1
        elif t is ev.AskAnswered or t is ev.AskExpired:
            if track_asks(self.asks, e) or self.offline_asks.pop(e.ask_id, None):
                self.asks_version += 1
                self.runs_version += 1

    # -- derived ------------------------------------------------------------------------------

    def all_asks(self) -> list[AskInfo]:
        rows = list(self.asks.values()) + [a for a in self.offline_asks.values() if a.ask_id not in self.asks]
        return sorted(rows, key=lambda a: a.opened)

    def ask_count(self) -> int:
        return len(self.asks) + sum(1 for a in self.offline_asks if a not in self.asks)

    def pending_for(self, row: RunInfo) -> int:
        if row.run_id in self.live_runs:
            return sum(1 for a in self.asks.values() if a.run_id == row.run_id)
        if row.status == ev.INTERRUPTED:
            return sum(1 for a in self.offline_asks.values() if a.run_id == row.run_id) or row.pending_asks
        return 0

    def ordered(self) -> list[str]:
        """Run ids, newest first."""
        if self._order_version != self.runs_version:
            self._order = sorted(self.runs, key=lambda k: (self.runs[k].started or 0.0, k), reverse=True)
            self._order_version = self.runs_version
        return self._order


class RunModel:
    """One run, as the detail screen shows it, built from its log and then from live events.

    The same reading of events as ``aethergraph.runtime.history.summarize`` (so the dashboard and
    ``ag show`` agree), but incremental: a live event updates the picture without re-reading the
    log. Long runs keep only the most recent timeline, log and message lines.
    """

    # The most recent events kept in memory (the views draw only what is on screen, so this is
    # memory, not drawing time); older ones are read from the log again, a page at a time, when
    # the person scrolls to the top (``earlier``).
    MAX_TIMELINE = 20_000
    MAX_LOG = 20_000
    MAX_MESSAGES = 500
    MAX_POINTS = 240
    MAX_PROGRESS = 4

    def __init__(self, run_id: str, layout: StoreLayout | None = None) -> None:
        self.run_id = run_id
        self.layout = layout  # a "running" log is checked against the run's owner lock in it
        self.summary = RunSummary(run_id=run_id)
        self.timeline: deque[ev.Event] = deque(maxlen=self.MAX_TIMELINE)
        self.logs: deque[ev.Log] = deque(maxlen=self.MAX_LOG)
        self.messages: deque[ev.MessageSent] = deque(maxlen=self.MAX_MESSAGES)
        self.progress: dict[str, ev.Progress] = {}
        self.progress_first: dict[str, tuple[float, float]] = {}  # (ts, current) of its first event
        # Each node's start and last end event (inputs, outputs, error and traceback), for the
        # Node tab: "why did it fail" without leaving the dashboard.
        self.node_events: dict[str, list] = {}
        self.metrics: dict[str, deque[float]] = {}
        # A static graph's whole shape (graph node path -> its graph_planned; a resume plans
        # again and the last one wins), for the DAG tab: the nodes that have not started too.
        self.dags: dict[str, ev.GraphPlanned] = {}
        # The run's open streams (channel().stream()), growing delta by delta until they end.
        self.streams = StreamTexts()
        self.last_seq = 0
        # Counters of everything ever appended, so a view can draw only what is new.
        self.timeline_total = 0
        self.logs_total = 0
        # Pages read back from the log, older than what the deques hold: {"timeline": [...], "log": [...]}.
        self.earlier: dict[str, list[ev.Event]] = {"timeline": [], "log": []}
        self.messages_total = 0
        self.version = 0
        self.nodes_version = 0
        self.loaded = False
        self.load_error = ""
        self._pending: list[ev.Event] = []

    def feed(self, e: ev.Event) -> None:
        """A live event: applied now, or kept until the log has been read."""
        if self.loaded:
            self.apply(e)
        else:
            self._pending.append(e)

    def apply(self, e: ev.Event) -> None:
        if e.seq and e.seq <= self.last_seq:
            return  # seen already (the log and the live stream overlap)
        self.last_seq = max(self.last_seq, e.seq)
        self.version += 1
        if len(self.timeline) == self.MAX_TIMELINE and self.earlier["timeline"]:
            self.earlier["timeline"] = []  # one falls off between the two: they no longer join
        self.timeline.append(e)
        self.timeline_total += 1
        if self.summary.apply(e):  # state, nodes, asks: the same rules as `ag show`
            self.nodes_version += 1
        t = type(e)
        if t is ev.StreamDelta or t is ev.MessageSent:
            self.streams.apply(e)
        if t is ev.NodeStarted:
            self.node_events[e.node] = [e, None]
        elif t in NODE_ENDS:
            pair = self.node_events.get(e.node)
            if pair is not None:
                pair[1] = e
        if t is ev.Log:
            if len(self.logs) == self.MAX_LOG and self.earlier["log"]:
                self.earlier["log"] = []
            self.logs.append(e)
            self.logs_total += 1
        elif t is ev.MessageSent:
            self.messages.append(e)
            self.messages_total += 1
        elif t is ev.Progress:
            self.progress.pop(e.progress_id, None)  # most recently touched last
            self.progress[e.progress_id] = e
            if e.state == "start" or e.progress_id not in self.progress_first:
                self.progress_first[e.progress_id] = (e.ts, e.current)
            while len(self.progress) > self.MAX_PROGRESS:
                self.progress_first.pop(self.progress.pop(next(iter(self.progress))).progress_id, None)
        elif t is ev.GraphPlanned:
            self.dags[e.node] = e
            self.nodes_version += 1
        elif t is ev.MemoryRecorded:
            if e.metrics:
                for name, value in e.metrics.items():
                    series = self.metrics.get(name)
                    if series is None:
                        series = self.metrics[name] = deque(maxlen=self.MAX_POINTS)
                    series.append(float(value))

    @property
    def status(self) -> str:
        s = self.summary
        if s.status == ev.RUNNING:
            return effective_status(s.status, s.host, self.run_id, self.layout) if self.layout else s.status
        return s.status

    def duration(self, now: float | None = None) -> float | None:
        return self.summary.duration(now or time.time(), self.status)


class Chain(Sequence):
    """Two sequences read as one, without copying (earlier pages + the live deque)."""

    __slots__ = ("a", "b")

    def __init__(self, a: Sequence, b: Sequence) -> None:
        self.a, self.b = a, b

    def __len__(self) -> int:
        return len(self.a) + len(self.b)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self.a)
        if i < 0:
            i += len(self)
        return self.a[i] if i < n else self.b[i - n]


def held(model: RunModel, name: str) -> tuple[Sequence, int]:
    """(what a view of the timeline or the log can show now, how many events of that kind the
    run has had in all)."""
    live, total = (model.timeline, model.timeline_total) if name == "timeline" else (model.logs, model.logs_total)
    earlier = model.earlier[name]
    return (Chain(earlier, live) if earlier else live), total
