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
from textual.containers import Horizontal, ScrollableContainer, Vertical, VerticalScroll
from textual.actions import SkipAction
from textual.widgets import Input, RichLog, Static, TabbedContent, TabPane

from aethergraph.runtime import events as ev

from ..format import LEVEL_STYLE, bad_style, clip, clock, dur, event_line, node_detail, one_line, status_text, visible
from ..messages import AnswerRequested, CancelRequested, EarlierRequested, ResumeRequested, RetryRequested
from ..state import held
from ..widgets import MetricsPanel, NodeTree, ProgressPanel
from ..widgets.dag import DagView
from ..widgets.jobs import JobsPanel
from ..widgets.lineview import LineView
from ..widgets.stream import StreamPanel, message_text
from .base import DashboardScreen

LINES_PER_TICK = 60  # 240 lines a second: more than anyone reads, little to draw
# A streaming run is redrawn 4 times a second, not on every 0.1 s tick: each redraw of the
# scrolling views repaints most of the screen, and at 10 a second that alone kept a core busy
# enough (45% at 1,000 events/s) to delay keys. A change to the node tree still draws at once.
STREAM_EVERY_S = 0.25


class RunDetailScreen(DashboardScreen):
    MODE = "run"
    HELP = ("One run: nodes (↑/↓ to pick one for x/r), timeline, log, messages (open streams growing above "
            "them), progress, metrics, its static graph and its jobs.")
    BINDINGS = [
        Binding("c", "cancel_run", "Cancel run"),
        Binding("x", "cancel_node", "Cancel node"),
        Binding("r", "retry_node", "Retry node"),
        Binding("R", "resume_run", "Resume"),
        Binding("a", "answer", "Answer"),
        Binding("t", "tab('timeline')", "Timeline tab"),
        Binding("l", "tab('log')", "Log tab"),
        Binding("m", "tab('messages')", "Messages tab", show=False),
        Binding("M", "tab('metrics')", "Metrics tab", show=False),
        Binding("d", "tab('node')", "Node details"),
        Binding("J", "tab('jobs')", "Jobs tab"),
        Binding("D", "tab('dag')", "DAG tab"),
        Binding("slash", "search", "Search"),
        Binding("v", "level", "Log level", show=False),
        Binding("z", "zoom", "Full width"),
        Binding("tab", "switch_focus", "Tree ⇄ tab", show=False),
        Binding("escape", "leave", "Back", show=False),
    ]

    # The log level filter: v steps through these (least to most severe).
    LEVELS = ("", "info", "warning", "error")
    LEVEL_RANK = {"debug": 0, "info": 1, "warning": 2, "error": 3, "critical": 4}

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
        # What each line view was last given: (model total, deque length, filter key).
        self._fed: dict[str, tuple] = {}
        self._kept: dict[str, list] = {}  # the filtered lists, grown as the run goes on
        self._t0: float | None = None
        self._node_filter = ""
        self._level = ""
        self._msg_width = 0

    def compose_body(self) -> ComposeResult:
        yield Static("", id="run-header", markup=False)
        with Horizontal(id="run-body"):
            yield NodeTree(id="node-tree")
            with Vertical(id="run-side"):
                yield ProgressPanel(id="progress")
                with TabbedContent(initial="timeline", id="run-tabs"):
                    with TabPane("Timeline", id="timeline"):
                        yield LineView(self._timeline_line, id="timeline-log")
                    with TabPane("Log", id="log"):
                        yield LineView(self._log_line, id="log-log")
                    with TabPane("Messages", id="messages"):
                        yield StreamPanel(id="streams")
                        yield RichLog(id="messages-log", max_lines=500, wrap=True, min_width=20)
                    with TabPane("Metrics", id="metrics"):
                        yield MetricsPanel(id="metrics-panel")
                    with TabPane("Node", id="node"):
                        with VerticalScroll(id="node-detail"):
                            yield Static("", id="node-detail-body", markup=False)
                    with TabPane("DAG", id="dag"):
                        with ScrollableContainer(id="dag-scroll"):
                            yield DagView(id="dag-view")
                    with TabPane("Jobs", id="jobs"):
                        yield JobsPanel(self.dash.home, id="jobs-panel")
                yield Input(placeholder="search this tab (enter; n/N next/previous; esc clears)", id="run-search",
                            compact=True)
                yield Static("", id="view-status", markup=False)

    def on_mount(self) -> None:
        self.query_one(NodeTree).focus()
        self._dag_tab = True
        self._show_dag_tab(False)

    def _show_dag_tab(self, shown: bool) -> None:
        """The DAG tab is there only for a run with a static graph (at 80 columns every tab
        title costs the others room)."""
        if shown != self._dag_tab:
            self._dag_tab = shown
            tabs = self.query_one("#run-tabs", TabbedContent)
            if not shown and tabs.active == "dag":
                tabs.active = "timeline"
            (tabs.show_tab if shown else tabs.hide_tab)("dag")

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
        self.query_one(DagView).sync(model.dags, s.nodes, model.status)
        self._show_dag_tab(bool(model.dags))
        self._draw_node_detail(model)
        self._t0 = s.started
        self._feed("timeline", *held(model, "timeline"))
        self._feed("log", *held(model, "log"))
        self._view_status()  # (once per redraw: it is one line)
        width = self._line_width()
        if width != self._msg_width:  # messages wrap: written again for a new width
            self._msg_width = width
            self._counts["messages"] = 0
            self.query_one("#messages-log", RichLog).clear()
        self._append("messages", model.messages, model.messages_total, self._message_line, width)
        self.query_one(StreamPanel).show(model.streams)
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
        self._fed = {}
        self._kept = {}
        self._node_filter = ""
        self.query_one(NodeTree).reset(run_id)
        for name in ("timeline", "log"):
            view = self.query_one(f"#{name}-log", LineView)
            view.set_items((), changed=True)
            view.follow = True
        self.query_one("#messages-log", RichLog).clear()
        self.query_one(StreamPanel).reset()
        self.query_one(ProgressPanel).reset()
        self.query_one(MetricsPanel).reset()
        self.query_one(JobsPanel).show_run(run_id)
        self._show_dag_tab(False)

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
        line.append(clip(s.graph, 30) or "?", style="bold")  # the state after it must stay in view
        line.append("  ")
        line.append_text(status_text(model.status))
        line.append(f"  {dur(model.duration(now))}")
        if asks:
            line.append("  ")
            line.append(f"[{asks} ask{'s' if asks > 1 else ''}: a]", style="bold reverse")
        second = Text(no_wrap=True, overflow="ellipsis")
        if s.error:
            second.append(clip(s.error, 200), style=bad_style())
            second.append(visible(f" · process pid {s.pid} on {s.host}"), style="dim")
        else:
            second.append(f"{len(s.nodes)} nodes · {s.events} events · pid {s.pid} on {one_line(s.host)}", style="dim")
            if s.attempts > 1:
                second.append(f" · resumed ×{s.attempts - 1}", style="dim")
            if s.attempt_of:
                second.append(f" · retry of {s.attempt_of}", style="dim")
        # (the joiner decides wrapping: a long graph name must not push the state off the line)
        self._set_header(Text("\n", no_wrap=True, overflow="ellipsis").join([line, second]))

    # -- the timeline and the log: line views over the model's own deques ------------------------

    def _timeline_line(self, e: ev.Event) -> Text:
        return event_line(e, self._t0)

    def _filters(self, name: str):
        """(key, predicate or None) for a view: the node picked in the tree (its subtree) and,
        for the log, the level."""
        node, level = self._node_filter, self._level if name == "log" else ""
        if not node and not level:
            return ("", ""), None
        rank = self.LEVEL_RANK.get(level, 0)
        prefix = node + "/"

        def keep(e) -> bool:
            if node and e.node != node and not e.node.startswith(prefix):
                return False
            return not level or self.LEVEL_RANK.get(e.level.lower(), 1) >= rank

        return (node, level), keep

    def _feed(self, name: str, items, total: int, force: bool = False) -> None:
        key, keep = self._filters(name)
        fed = self._fed.get(name)
        if not force and fed is not None and fed[0] == total and fed[1] == len(items) and fed[2] == key:
            return
        view = self.query_one(f"#{name}-log", LineView)
        changed = fed is None or fed[2] != key
        if keep is None:
            dropped = 0 if changed else (total - len(items)) - (fed[0] - fed[1])
            view.set_items(items, dropped, changed=changed)
        else:
            # A filtered view is a list of its own: made once when the filter changes, then
            # only the new items are checked and appended (a live run adds hundreds a second
            # to a deque of thousands).
            new = total - fed[0] if not changed and fed is not None else -1
            kept = self._kept.get(name)
            if kept is None or changed or new < 0 or new > len(items) or len(items) < fed[1]:
                kept = [e for e in items if keep(e)]
            elif new:
                tail = [items[i] for i in range(len(items) - new, len(items))]
                kept.extend(e for e in tail if keep(e))
                if len(kept) > len(items):
                    del kept[: len(kept) - len(items)]
            self._kept[name] = kept
            view.set_items(kept, changed=changed)
        self._fed[name] = (total, len(items), key)

    def _current_view(self) -> LineView | None:
        active = self.query_one("#run-tabs", TabbedContent).active
        return self.query_one(f"#{active}-log", LineView) if active in ("timeline", "log") else None

    def _view_status(self) -> None:
        view = self._current_view()
        parts = []
        if view is not None:
            parts.append("following (F)" if view.follow else "paused: F or End follows")
            parts.append(f"{len(view.items)} lines")
            model = self.dash.detail
            name = "timeline" if view.id == "timeline-log" else "log"
            if model is not None and not self._filters(name)[0][0] and not self._filters(name)[0][1]:
                items, total = held(model, name)
                if total > len(items):
                    parts.append(f"{total - len(items):,} earlier: g or scroll to the top reads them")
            if view.search:
                parts.append(f"/{view.search}" + ("" if view.match_index is not None else " (no match)") +
                             " n/N")
        if self._node_filter:
            parts.append(f"node {one_line(self._node_filter.rsplit('/', 1)[-1])} (root: all)")
        if self._level:
            parts.append(f"level ≥ {self._level} (v)")
        text = " · ".join(parts)
        status = self.query_one("#view-status", Static)
        if text != getattr(self, "_status_plain", None):
            self._status_plain = text
            status.update(text, layout=False)

    def on_line_view_follow_changed(self, _: LineView.FollowChanged) -> None:
        self._view_status()

    def on_line_view_at_top(self, event: LineView.AtTop) -> None:
        """Scrolled to the top: read the page before it from the run's log."""
        model = self.dash.detail
        name = "timeline" if event.view.id == "timeline-log" else "log"
        if model is None or not model.loaded or any(self._filters(name)[0]):
            return
        items, total = held(model, name)
        if total > len(items) and len(items):
            self.post_message(EarlierRequested(model.run_id, name, items[0].seq))

    def on_tabbed_content_tab_activated(self, _) -> None:
        self._view_status()
        self._draw_node_detail()

    def on_tree_node_highlighted(self, event) -> None:
        """Picking a node in the tree shows only its part of the timeline and log. The run's
        own top node is all of it: no filter (and nothing to sift while it streams)."""
        path = event.node.data or ""
        model = self.dash.detail
        node = model.summary.nodes.get(path) if model is not None and path else None
        if node is not None and not node.parent:
            path = ""
        if path != self._node_filter:
            self._node_filter = path
            self._refeed()

    def _draw_node_detail(self, model=None, force: bool = False) -> None:
        """The Node tab, when it is shown (and only when what it shows has moved)."""
        model = model or self.dash.detail
        if model is None or self.query_one("#run-tabs", TabbedContent).active != "node":
            return
        key = (model.run_id, self._node_filter, model.nodes_version, model.status)
        if key == getattr(self, "_node_drawn", None) and not force:
            return
        self._node_drawn = key
        self.query_one("#node-detail-body", Static).update(node_detail(self._node_filter, model))

    def _refeed(self) -> None:
        model = self.dash.detail
        if model is not None and model.loaded and model.run_id == self._shown_run:
            self._feed("timeline", *held(model, "timeline"))
            self._feed("log", *held(model, "log"))
            self._draw_node_detail(model)
        self._view_status()

    def _line_width(self) -> int:
        """The width messages are wrapped to. A log on a hidden tab has no width of its own,
        and RichLog renders a line once, so it is written at the visible tab's width."""
        widths = [v.scrollable_content_region.width for v in self.query(LineView)] + [
            log.scrollable_content_region.width for log in self.query(RichLog)]
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
    def _log_line(e: ev.Log) -> Text:  # noqa: D102 - one log record as a line
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(clock(e.ts), style="dim")
        line.append(f" {one_line(e.level.upper()):<7} ", style=LEVEL_STYLE.get(e.level.lower(), ""))
        if e.node:
            line.append(one_line(e.node.rsplit("/", 1)[-1]) + " ", style="cyan")
        line.append(one_line(e.message))
        return line

    @staticmethod
    def _message_line(e: ev.MessageSent) -> Text:
        # (an image or a file says its name, size and how to export it; text wraps)
        return message_text(e)

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

    def yank_target(self) -> tuple[str, str] | None:
        """The picked node's path, or the run id when the run itself is picked."""
        model = self.dash.detail
        if model is None:
            return None
        path = self.query_one(NodeTree).selected_path
        return ("node path", path) if path else ("run id", model.run_id)

    def action_cancel_run(self) -> None:
        self.request(CancelRequested, self._run_id())

    def action_cancel_node(self) -> None:
        run_id = self._run_id()
        self.request(CancelRequested, run_id, run_id and self._node())

    def action_retry_node(self) -> None:
        run_id = self._run_id()
        self.request(RetryRequested, run_id, run_id and self._node())

    def action_resume_run(self) -> None:
        self.request(ResumeRequested, self._run_id())

    def action_answer(self) -> None:
        run_id = self._run_id()
        if not run_id:
            return
        asks = [a for a in self.dash.state.all_asks() if a.run_id == run_id]
        if not asks:
            self.notify("This run is not waiting on an answer.")
            return
        self.request(AnswerRequested, asks[0].ask_id)

    def action_tab(self, name: str) -> None:
        if name == "dag" and not self._dag_tab:
            self.notify("This run has no static graph (@graphify): its nodes are in the tree.")
            return
        self.query_one("#run-tabs", TabbedContent).active = name
        view = self._current_view()
        if name == "dag":
            self.query_one("#dag-scroll").focus()  # (it scrolls: a graph can be long)
        elif name == "jobs":
            # Its keys (c cancels the picked job) are the table's: it takes the focus, so c there
            # never means "cancel the run".
            self.query_one("#jobs-table").focus()
        elif view is not None and not isinstance(self.focused, NodeTree):
            view.focus()  # (from the tree, focus stays there: tab moves to the view)
        self._view_status()

    def action_switch_focus(self) -> None:
        """Tab: from the node tree to the shown tab's lines, and back."""
        view = self._current_view()
        if isinstance(self.focused, NodeTree) and view is not None:
            view.focus()
        elif isinstance(self.focused, NodeTree) and self.query_one("#run-tabs", TabbedContent).active == "jobs":
            self.query_one("#jobs-table").focus()
        elif isinstance(self.focused, NodeTree):
            self.query_one("#run-tabs", TabbedContent).focus()
        else:
            self.query_one(NodeTree).focus()

    def action_search(self) -> None:
        if self._current_view() is None:
            self.action_tab("timeline")
        box = self.query_one("#run-search", Input)
        box.add_class("-shown")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "run-search":
            return
        view = self._current_view()
        if view is not None:
            found = view.set_search(event.value.strip())
            view.focus()
            if not found:
                self.notify(f"no line of this tab contains {event.value.strip()!r}", severity="warning")
        self._view_status()

    def action_leave(self) -> None:
        """Esc: close the search line (clearing the search), else go back a panel."""
        box = self.query_one("#run-search", Input)
        if box.has_class("-shown"):
            box.value = ""
            box.remove_class("-shown")
            for view in self.query(LineView):
                view.set_search("")
            (self._current_view() or self.query_one(NodeTree)).focus()
            self._view_status()
            return
        raise SkipAction()

    def action_level(self) -> None:
        i = self.LEVELS.index(self._level)
        self._level = self.LEVELS[(i + 1) % len(self.LEVELS)]
        self.action_tab("log")
        self._refeed()
        self.notify(f"log: {'every level' if not self._level else self._level + ' and above'}")

    def action_zoom(self) -> None:
        """Full width for the tabs (the node tree and progress hidden), and back."""
        body = self.query_one("#run-body")
        body.toggle_class("-zoomed")
        if body.has_class("-zoomed"):
            view = self._current_view()
            (view or self.query_one("#run-tabs")).focus()
