"""Panel 2 — one run: its node tree, timeline, log lines, messages, progress and metrics.

The run's log is read once (in a worker thread) when it is opened; after that, live events for
it arrive with every batch and are appended. Only what is new since the last tick is drawn, and
never more than a screenful of lines per tick, so a run emitting a thousand events a second
scrolls by without the keys lagging.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import RichLog, Static, TabbedContent, TabPane

from runtime import events as ev

from ..format import LEVEL_STYLE, bad_style, clip, clock, dur, event_line, one_line, status_text, visible
from ..widgets import MetricsPanel, NodeTree, ProgressPanel
from .base import DashboardScreen

LINES_PER_TICK = 60  # 240 lines a second: more than anyone reads, little to draw
# A streaming run is redrawn 4 times a second, not on every 0.1 s tick: each redraw of the
# scrolling views repaints most of the screen, and at 10 a second that alone kept a core busy
# enough (45% at 1,000 events/s) to delay keys. A change to the node tree still draws at once.
STREAM_EVERY_S = 0.25


class RunDetailScreen(DashboardScreen):
    MODE = "run"
    HELP = "One run: nodes (↑/↓ to pick one for x/r), timeline, log, messages, progress and metrics."
    BINDINGS = [
        Binding("c", "cancel_run", "Cancel run"),
        Binding("x", "cancel_node", "Cancel node"),
        Binding("r", "retry_node", "Retry node"),
        Binding("R", "resume_run", "Resume"),
        Binding("a", "answer", "Answer"),
        Binding("t", "tab('timeline')", "Timeline", show=False),
        Binding("l", "tab('log')", "Log", show=False),
        Binding("m", "tab('messages')", "Messages", show=False),
        Binding("g", "tab('metrics')", "Metrics", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown_run: str | None = None
        self._header_plain = ""
        self._drawn_version = -1
        self._drawn_nodes = -1
        self._drawn_second = 0
        self._drawn_stream = 0.0
        self._stream_nodes = -1
        self._drawn_metrics = -1
        self._counts = {"timeline": 0, "log": 0, "messages": 0}

    def compose_body(self) -> ComposeResult:
        yield Static("", id="run-header", markup=False)
        with Horizontal(id="run-body"):
            yield NodeTree(id="node-tree")
            with Vertical(id="run-side"):
                yield ProgressPanel(id="progress")
                with TabbedContent(initial="timeline", id="run-tabs"):
                    with TabPane("Timeline", id="timeline"):
                        yield RichLog(id="timeline-log", max_lines=500, wrap=False, min_width=20)
                    with TabPane("Log", id="log"):
                        yield RichLog(id="log-log", max_lines=1000, wrap=False, min_width=20)
                    with TabPane("Messages", id="messages"):
                        yield RichLog(id="messages-log", max_lines=500, wrap=True, min_width=20)
                    with TabPane("Metrics", id="metrics"):
                        yield MetricsPanel(id="metrics-panel")

    def on_mount(self) -> None:
        self.query_one(NodeTree).focus()

    # -- drawing --------------------------------------------------------------------------------

    def sync(self, force: bool = False) -> None:
        if not self.is_mounted:
            return
        model = self.dash.detail
        if model is None:
            self._set_header(Text("No run selected: pick one in Runs (1) and press enter."))
            return
        if model.run_id != self._shown_run:
            self._reset(model.run_id)
        if not model.loaded:
            self._set_header(Text.assemble(("RUN ", "bold"), model.run_id, ("  reading its log…", "dim")))
            return
        if model.load_error:
            self._set_header(Text.assemble(("RUN ", "bold"), model.run_id, ("  " + one_line(model.load_error), bad_style())))
            return
        now = time.time()
        moved = model.version != self._drawn_version
        if (not force and moved and model.nodes_version == self._stream_nodes
                and now - self._drawn_stream < STREAM_EVERY_S):
            moved = False  # more of the same stream: drawn on a tick a moment from now
        if not (force or moved or int(now) != self._drawn_second):
            return
        self._drawn_second = int(now)
        self._draw_header(model, now)
        if not (force or moved):
            return
        self._drawn_version = model.version
        self._drawn_stream = now
        self._stream_nodes = model.nodes_version
        tree = self.query_one(NodeTree)
        s = model.summary
        tree.sync(model.run_id, s.graph, model.status, s.nodes)
        t0 = s.started
        width = self._line_width()
        self._append("timeline", model.timeline, model.timeline_total, lambda e: event_line(e, t0), width)
        self._append("log", model.logs, model.logs_total, self._log_line, width)
        self._append("messages", model.messages, model.messages_total, self._message_line, width)
        self.query_one(ProgressPanel).sync(model.progress, model.progress_first)
        metrics_key = sum(len(v) for v in model.metrics.values()) + len(model.metrics)
        if metrics_key != self._drawn_metrics:
            self._drawn_metrics = metrics_key
            self.query_one(MetricsPanel).sync(model.metrics)

    def _reset(self, run_id: str) -> None:
        self._shown_run = run_id
        self._drawn_version = -1
        self._drawn_metrics = -1
        self._counts = {"timeline": 0, "log": 0, "messages": 0}
        self.query_one(NodeTree).reset(run_id)
        for name in self._counts:
            self.query_one(f"#{name}-log", RichLog).clear()
        self.query_one(ProgressPanel).reset()
        self.query_one(MetricsPanel).reset()

    def _set_header(self, text: Text) -> None:
        # Two fixed lines: a repaint, never a layout of the whole screen (that is what costs).
        if text.plain != self._header_plain:
            self._header_plain = text.plain
            self.query_one("#run-header", Static).update(text, layout=False)

    def _draw_header(self, model, now: float) -> None:
        s = model.summary
        asks = len(s.open_asks)
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("RUN ", style="bold")
        line.append(model.run_id)
        line.append("  ")
        line.append(one_line(s.graph) or "?", style="bold")
        line.append("  ")
        line.append_text(status_text(model.status))
        line.append(f"  {dur(model.duration(now))}")
        if asks:
            line.append("  ")
            line.append(f"[{asks} ask{'s' if asks > 1 else ''}: a]", style="bold reverse")
        second = Text(no_wrap=True, overflow="ellipsis")
        if s.error:
            second.append(clip(s.error, 200), style=bad_style())
        else:
            second.append(f"{len(s.nodes)} nodes · {s.events} events · pid {s.pid} on {one_line(s.host)}", style="dim")
            if s.attempts > 1:
                second.append(f" · resumed ×{s.attempts - 1}", style="dim")
            if s.attempt_of:
                second.append(f" · retry of {s.attempt_of}", style="dim")
        self._set_header(Text("\n").join([line, second]))

    def _line_width(self) -> int:
        """The width lines are cut to. A log on a hidden tab has no width of its own, and
        RichLog renders a line once, so every tab is written at the visible tab's width."""
        widths = [log.scrollable_content_region.width for log in self.query(RichLog)]
        width = max(widths, default=0)
        if width > 0:
            self._last_width = width
        return getattr(self, "_last_width", 0) or max(40, self.size.width - 34)

    def _append(self, name: str, items, total: int, render, width: int) -> None:
        new = total - self._counts[name]
        if new <= 0:
            return
        self._counts[name] = total
        log = self.query_one(f"#{name}-log", RichLog)
        take = min(new, len(items), LINES_PER_TICK)
        if new > take:
            log.write(Text(f"… {new - take} earlier lines not shown (ag show {self._shown_run})", style="dim"),
                      width=width)
        # One write per tick: RichLog resizes its scroll area on every write.
        lines = [render(items[i]) for i in range(len(items) - take, len(items))]
        # (Messages wrap; the joiner's no_wrap would otherwise cut them at the edge.)
        joiner = Text("\n") if name == "messages" else Text("\n", no_wrap=True, overflow="ellipsis")
        log.write(joiner.join(lines), width=width)

    @staticmethod
    def _log_line(e: ev.Log) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(clock(e.ts), style="dim")
        line.append(f" {one_line(e.level.upper()):<7} ", style=LEVEL_STYLE.get(e.level.lower(), ""))
        if e.node:
            line.append(one_line(e.node.rsplit("/", 1)[-1]) + " ", style="cyan")
        line.append(one_line(e.message))
        return line

    @staticmethod
    def _message_line(e: ev.MessageSent) -> Text:
        line = Text()
        line.append(clock(e.ts), style="dim")
        line.append(" ")
        line.append(visible(e.text))  # wrapped, so its own newlines may stay
        return line

    # -- actions --------------------------------------------------------------------------------

    def _run_id(self) -> str | None:
        model = self.dash.detail
        if model is None:
            self.notify("No run selected.", severity="warning")
            return None
        return model.run_id

    def _node(self) -> str | None:
        path = self.query_one(NodeTree).selected_path
        if not path:
            self.notify("Pick a node in the tree first (↑/↓).", severity="warning")
            return None
        return path

    def action_cancel_run(self) -> None:
        run_id = self._run_id()
        if run_id:
            self.dash.request_cancel(run_id)

    def action_cancel_node(self) -> None:
        run_id = self._run_id()
        path = run_id and self._node()
        if run_id and path:
            self.dash.request_cancel(run_id, path)

    def action_retry_node(self) -> None:
        run_id = self._run_id()
        path = run_id and self._node()
        if run_id and path:
            self.dash.request_retry(run_id, path)

    def action_resume_run(self) -> None:
        run_id = self._run_id()
        if run_id:
            self.dash.request_resume(run_id)

    def action_answer(self) -> None:
        run_id = self._run_id()
        if not run_id:
            return
        asks = [a for a in self.dash.state.all_asks() if a.run_id == run_id]
        if not asks:
            self.notify("This run is not waiting on an answer.")
            return
        self.dash.open_answer(asks[0].ask_id)

    def action_tab(self, name: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = name
