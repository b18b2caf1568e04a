"""``ag tui``: the dashboard app — panels, keys, and the glue between trio and Textual.

Layout of responsibilities:

- ``TrioBridge`` runs trio as a guest of Textual's asyncio loop; ``Backend`` is everything done
  in trio (attaching to sidecars, commands, hosting a run with ``--run``). Both post messages.
- ``DashboardState`` / ``RunModel`` hold what is known; message handlers here fold facts in.
- Screens (one per numbered panel, as Textual *modes* so each keeps its place) redraw from the
  state on a 10 Hz tick. Store reads run in thread workers, sidecar calls in trio tasks.

Closing the dashboard closes its sidecar connections and nothing else: runs in other
processes never notice. With ``--run`` the hosted run is cancelled cleanly first (after a
confirmation), so its log says CANCELLED.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.actions import SkipAction
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen

from aethergraph.runtime import events as ev
from aethergraph.runtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, UsageError
from aethergraph.runtime.frontend import entrypoint, parse_inputs
from aethergraph.runtime.info import AskInfo
from aethergraph.runtime.store.layout import StoreLayout, resolve_home
from aethergraph.runtime.textsafe import one_line, visible

from .messages import (
    BackendProblem,
    HostedRunEnded,
    HostedRunStarted,
    IndexLoaded,
    LiveEvents,
    RuntimeAttached,
    RuntimeDetached,
)
from .screens.base import DashboardScreen
from .state import DashboardState, RunModel
from .store import StoreReader

if TYPE_CHECKING:
    from .backend import Backend
    from .bridge import TrioBridge

log = logging.getLogger("aethergraph.tui")

EXIT_FAILED = EXIT_RUN_FAILED


class _NotifyHandler(logging.Handler):
    """Warnings the runtime logs (a corrupt log line, a failed resume) become notifications:
    printed to stderr they would tear the screen, and swallowed they would be lost."""

    def __init__(self, app: "AetherGraphApp") -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("aethergraph.node"):
            return  # a hosted run's own logger: its lines are in the run's Log tab already
        try:
            text = record.getMessage()
        except Exception:
            return
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.app.post_message(BackendProblem(text, "error" if record.levelno >= logging.ERROR else "warning"))


def _panel(name: str):
    """A panel's screen, imported when first shown (the first paint needs only Runs)."""

    def make():
        from . import screens

        return getattr(screens, name)()

    return make


def _commands_provider():
    from .commands import DashboardCommands

    return DashboardCommands


class AetherGraphApp(App[int]):
    """The dashboard. ``home``: the store; ``run``/``inputs``/``entrypoint``: a graph to host
    (``ag tui --run``); ``poll_s``: how often to look for runtimes; ``index_s``: how often to
    re-read the index. It returns (``run()``) the exit code ``ag tui`` exits with."""

    CSS_PATH = "app.tcss"
    TITLE = "AetherGraph"
    MODES = {
        "runs": _panel("RunsScreen"),
        "run": _panel("RunDetailScreen"),
        "asks": _panel("AsksScreen"),
        "memory": _panel("MemoryScreen"),
        "artifacts": _panel("ArtifactsScreen"),
    }
    DEFAULT_MODE = "runs"
    COMMANDS = App.COMMANDS | {_commands_provider}
    BINDINGS = [
        Binding("1", "panel('runs')", "Runs panel", show=False),
        Binding("2", "panel('run')", "Run detail panel", show=False),
        Binding("3", "panel('asks')", "Asks panel", show=False),
        Binding("4", "panel('memory')", "Memory panel", show=False),
        Binding("5", "panel('artifacts')", "Artifacts panel", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("colon", "command_palette", "Commands", show=False),
        Binding("escape", "back", "Back", show=False),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
        Binding("y", "yank", "Copy id"),
        Binding("B", "toggle_alerts", "Ask alerts on/off", show=False),
        Binding("q", "quit", "Quit"),
    ]

    ask_count = reactive(0)
    live_count = reactive(0)

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        run: Any = None,
        inputs: dict[str, Any] | None = None,
        entrypoint: str = "",
        poll_s: float = 1.0,
        index_s: float = 2.0,
        watch_css: bool = False,
    ) -> None:
        super().__init__(watch_css=watch_css)
        from .format import use_no_color

        use_no_color(self.no_color)  # states read by weight alone when colours are off
        self.home: Path = resolve_home(home)
        self.store = StoreReader(self.home)
        self.state = DashboardState()
        self.state.layout = StoreLayout(self.home)
        self.detail: RunModel | None = None
        self.hosted = (run, dict(inputs or {}), entrypoint) if run is not None else None
        self.poll_s = poll_s
        self._backend: Backend | None = None
        self._bridge: TrioBridge | None = None
        self.index_s = index_s
        self.hosted_result: HostedRunEnded | None = None
        self._history: list[str] = []
        self._log_handler: _NotifyHandler | None = None
        self._stop_task: asyncio.Future | None = None
        self._stopping = False
        self._index_loads = 0
        self.first_paint_s: float | None = None
        # A new ask (seen live) raises a toast and rings the bell once; B turns that off.
        self.ask_alerts = os.environ.get("AETHERGRAPH_TUI_ALERTS", "1") not in ("0", "off", "no")
        self._alerted: set[str] = set()
        self._started_wall = time.time()
        self._t0 = time.perf_counter()

    # -- the trio side (built on first use: trio and the websocket stack load after first paint)

    @property
    def backend(self) -> "Backend":
        if self._backend is None:
            from .backend import Backend, HostedRun

            hosted = HostedRun(*self.hosted) if self.hosted is not None else None
            self._backend = Backend(self.post_message, self.home, hosted=hosted, poll_s=self.poll_s)
        return self._backend

    @property
    def bridge(self) -> "TrioBridge":
        if self._bridge is None:
            from .bridge import TrioBridge

            self._bridge = TrioBridge(self.backend.main)
        return self._bridge

    # -- lifecycle ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._log_handler = _NotifyHandler(self)
        logging.getLogger("aethergraph").addHandler(self._log_handler)
        self.load_index()
        self.set_interval(0.1, self._tick)
        self.set_interval(self.index_s, self.load_index)
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        if self.first_paint_s is None:
            self.first_paint_s = time.perf_counter() - self._t0
            if not self._stopping:
                self.bridge.start()
            # Everything imported and composed so far lives as long as the app: keep it out of
            # the collector's full passes, which otherwise stall the UI for ~100 ms each while
            # a busy run streams events.
            gc.freeze()

    async def on_unmount(self) -> None:
        await self._stop_trio()
        self.store.close()
        if self._log_handler is not None:
            logging.getLogger("aethergraph").removeHandler(self._log_handler)

    async def _stop_trio(self) -> None:
        """End the hosted run cleanly, then cancel everything trio runs and wait for it.

        Called by quit and again by unmount: both wait for the same stop, which runs in its own
        task so that the app cancelling its workers cannot cut it short (an asyncio loop that
        closes under a trio guest run leaves trio in pieces)."""
        self._stopping = True
        if self._bridge is None:
            return  # trio never started (the app closed before its first paint)
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop_trio_once())
        await asyncio.shield(self._stop_task)

    async def _stop_trio_once(self) -> None:
        if self.bridge.running:
            try:
                await asyncio.wait_for(self.bridge.call(self.backend.shutdown), 15)
            except Exception as exc:  # shutting down regardless; say why it was not clean
                log.error("closing the hosted runtime: %s", exc)
        await self.bridge.stop()

    def _tick(self) -> None:
        """Redraw whatever is on screen from the state (cheap when nothing moved)."""
        for screen in self.screen_stack:
            if isinstance(screen, DashboardScreen):
                screen.redraw()

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every toast is plain text with control characters shown: most name a run, a node or
        repeat an error a run raised, none of which may style or drive the terminal."""
        super().notify(visible(str(message)), title=one_line(title), severity=severity,  # type: ignore[arg-type]
                       timeout=timeout, markup=False)

    # -- messages from trio and from workers ----------------------------------------------------

    def on_runtime_attached(self, msg: RuntimeAttached) -> None:
        self.state.attach(msg.runtime_id, msg.advert, msg.runs, msg.asks)
        self._counts()
        # Asks opened since the dashboard started are news; older ones the badge shows.
        fresh = [a for a in msg.asks if a.ask_id not in self._alerted and a.opened >= self._started_wall]
        self._alerted.update(a.ask_id for a in msg.asks)
        if fresh:
            self._alert(fresh)
        d = self.detail
        if d is not None and d.loaded and any(r.run_id == d.run_id for r in msg.runs):
            # Events between our read of its log and this attach came from nowhere: read again.
            self._load_detail(d.run_id)

    def on_runtime_detached(self, msg: RuntimeDetached) -> None:
        had_runs = any(rid == msg.runtime_id for rid in self.state.live_runs.values())
        self.state.detach(msg.runtime_id)
        self._counts()
        if had_runs:
            self.notify(f"runtime {msg.runtime_id} went away: {msg.reason}", severity="warning")
        self.load_index()

    def on_live_events(self, msg: LiveEvents) -> None:
        st = self.state
        d = self.detail
        d_id = d.run_id if d is not None else None
        new_asks = []
        for rid, e in msg.items:
            st.apply(rid, e)
            if e.run_id == d_id:
                d.feed(e)
            if type(e) is ev.AskOpened and e.ask_id not in self._alerted:
                self._alerted.add(e.ask_id)
                new_asks.append(e)
        self._counts()
        if new_asks:
            self._alert(new_asks)

    def _alert(self, asks: list) -> None:
        """A run is waiting on a person: say so wherever they are, once per ask (one bell per
        batch, however many arrived together)."""
        if not self.ask_alerts:
            return
        a = asks[-1]
        more = f" (+{len(asks) - 1} more)" if len(asks) > 1 else ""
        self.notify(f"run {a.run_id} asks: {a.prompt}{more} — 3 to answer (B: alerts off)",
                    title="new ask", severity="warning", timeout=8)
        self.bell()

    def on_hosted_run_started(self, msg: HostedRunStarted) -> None:
        self.sub_title = f"hosting a run (runtime {msg.runtime_id})"

    def on_hosted_run_ended(self, msg: HostedRunEnded) -> None:
        self.hosted_result = msg
        text = f"run {msg.run_id} {msg.status}" + (f": {msg.error}" if msg.error else "")
        self.notify(text, severity="information" if msg.status == ev.SUCCEEDED else "warning", timeout=10)

    def on_backend_problem(self, msg: BackendProblem) -> None:
        self.notify(msg.text, severity=msg.severity, timeout=8)

    def on_index_loaded(self, msg: IndexLoaded) -> None:
        st = self.state
        if msg.rows is None:
            st.loading_older = False
            if not st.store_missing:
                st.store_missing = True
                st.runs_version += 1
            return
        if st.store_missing:
            st.store_missing = False
        st.merge_index(msg.rows, msg.has_more, total=msg.total, older=msg.older)
        if msg.older and msg.final:
            st.loading_older = False
        if msg.offline_asks is not None:
            st.set_offline_asks(msg.offline_asks)
        self._counts()

    @property
    def home_label(self) -> str:
        """The store as a person would type it: relative to here, or under ~."""
        try:
            return str(self.home.relative_to(Path.cwd()))
        except ValueError:
            pass
        try:
            return "~/" + str(self.home.relative_to(Path.home()))
        except ValueError:
            return str(self.home)

    def _counts(self) -> None:
        self.ask_count = self.state.ask_count()
        self.live_count = len(self.state.runtimes)

    # -- reading the store (thread workers) -----------------------------------------------------

    def load_index(self) -> None:
        self._index_loads += 1
        # The first read also catches the index up with the logs (a runtime that died left some
        # unindexed), but only after posting what the index already has: first paint is not
        # kept waiting. Live runtimes keep the index current; catching up again each minute
        # covers the rest.
        catch_up = self._index_loads == 1 or self._index_loads % 30 == 0
        self._read_index(catch_up)

    def reload_index(self) -> None:
        self._read_index(True)

    def load_more_runs(self, everything: bool = False) -> None:
        """The next page of older runs (``everything``: pages up to 10,000 runs, for a filter),
        from the oldest run loaded so far. One read at a time; the runs list asks again when
        the cursor nears its end."""
        st = self.state
        if st.loading_older or not st.index_has_more or st.oldest_key is None:
            return
        st.loading_older = True
        self._read_older(st.oldest_key, 10_000 if everything else st.PAGE)

    def _fetch_page(self) -> IndexLoaded:
        """The newest page of runs and the open asks, as a message (None rows: no store yet)."""
        store = self.store
        page = store.runs(self.state.PAGE) if store.exists() else None
        if page is None:
            return IndexLoaded(None, False, [])
        rows, more, total = page
        return IndexLoaded(rows, more, store.open_asks(), total)

    @work(thread=True, exclusive=True, group="index")
    def _read_index(self, catch_up: bool) -> None:
        store = self.store
        try:
            loaded = self._fetch_page()
            self.post_message(loaded)
            if loaded.rows is None:
                return
            if catch_up and store.catch_up():
                self.post_message(self._fetch_page())
        except Exception as exc:
            self.post_message(BackendProblem(f"reading the index: {type(exc).__name__}: {exc}"))

    @work(thread=True, exclusive=False, group="older")
    def _read_older(self, before: tuple[float, str], want: int) -> None:
        store = self.store
        try:
            while want > 0:
                page = store.runs(min(want, 1000), before)
                if page is None:
                    self.post_message(IndexLoaded(None, False, None, older=True))
                    return
                rows, more, total = page
                want -= len(rows)
                final = not more or not rows or want <= 0
                self.post_message(IndexLoaded(rows, more, None, total, older=True, final=final))
                if final:
                    return
                before = (rows[-1].started, rows[-1].run_id)
        except Exception as exc:
            self.state.loading_older = False
            self.post_message(BackendProblem(f"reading older runs: {type(exc).__name__}: {exc}"))

    def open_run(self, run_id: str) -> None:
        """Show a run in panel 2 (its log is read in a worker; live events queue meanwhile)."""
        if self.detail is None or self.detail.run_id != run_id:
            self.detail = RunModel(run_id)
            self._load_detail(run_id)
        self.action_panel("run")

    @work(thread=True, exclusive=True, group="detail")
    def _load_detail(self, run_id: str) -> None:
        model = RunModel(run_id)
        error = ""
        try:
            for e in self.store.read_run(run_id):
                model.apply(e)
        except Exception as exc:
            error = f"cannot read its log: {type(exc).__name__}: {exc}"
        if not error and model.summary.events == 0 and run_id not in self.state.live_runs:
            error = "no events in its log yet"
        self.call_from_thread(self._detail_loaded, model, error)

    def _detail_loaded(self, model: RunModel, error: str) -> None:
        cur = self.detail
        if cur is None or cur.run_id != model.run_id:
            return  # the person moved on to another run
        for e in [*cur.timeline, *cur._pending]:  # live events the log did not have yet
            model.apply(e)
        model.load_error = error if model.summary.events == 0 else ""
        model.loaded = True
        model.version += 1
        self.detail = model

    @work(thread=True, exclusive=True, group="earlier")
    def load_earlier(self, run_id: str, name: str, before_seq: int, page: int = 5000) -> None:
        """The ``page`` events (of the timeline, or log lines) just before ``before_seq``, read
        from the run's log again: a long run's whole history, a page at a time, as the person
        scrolls up, without holding it all in memory."""
        try:
            events = self.store.read_run(run_id)
        except Exception as exc:
            self.post_message(BackendProblem(f"reading the log of run {run_id}: {type(exc).__name__}: {exc}"))
            return
        older = [e for e in events if e.seq and e.seq < before_seq and (name != "log" or type(e) is ev.Log)]
        self.call_from_thread(self._earlier_loaded, run_id, name, before_seq, older[-page:])

    def _earlier_loaded(self, run_id: str, name: str, before_seq: int, chunk: list) -> None:
        d = self.detail
        if d is None or d.run_id != run_id or not chunk:
            return
        from .state import held

        items, _ = held(d, name)
        if not len(items) or items[0].seq != before_seq:
            return  # the view moved on meanwhile
        d.earlier[name] = chunk + d.earlier[name]
        d.version += 1

    # -- asks -----------------------------------------------------------------------------------

    def find_ask(self, ask_id: str) -> AskInfo | None:
        return self.state.asks.get(ask_id) or self.state.offline_asks.get(ask_id)

    def open_answer(self, ask_id: str) -> None:
        ask = self.find_ask(ask_id)
        if ask is None:
            self.notify(f"ask {ask_id} is no longer open", severity="warning")
            return

        def answered(answer: str | None) -> None:
            if answer is not None:
                where = "" if ask.runtime_id else " (kept for the run's resume)"
                if ask.kind == "files":  # names and sizes, not the stored files' JSON
                    from aethergraph.console import answered_files

                    answer = answered_files(answer)
                self.notify(f"answered {ask_id}: {one_line(answer)}{where}")
                if not ask.runtime_id:
                    self.reload_index()
                    if self.detail is not None and self.detail.run_id == ask.run_id:
                        self._load_detail(ask.run_id)  # its log has grown: show what it says now

        if ask.kind == "files":  # a tree of this machine's files to pick from
            from .screens.file_picker import FilePickerModal

            self.push_screen(FilePickerModal(ask), answered)
            return
        from .screens.asks import AnswerModal

        self.push_screen(AnswerModal(ask), answered)

    async def answer(self, ask: AskInfo, value: str) -> str:
        """Answer through the runtime that asked; for a run that is not live, into its log."""
        if ask.runtime_id:
            return await self.bridge.call(self.backend.answer, ask.runtime_id, ask.ask_id, value)
        return await asyncio.to_thread(self._answer_offline, ask.ask_id, value)

    def _answer_offline(self, ask_id: str, value: str) -> str:
        from aethergraph.resume import answer_offline

        # An answer that does not fit raises InvalidAnswer: a SidecarError, as a live one's.
        _, answer = answer_offline(self.store.layout, ask_id, value)
        return answer

    # -- actions (each confirmed, each reported) ------------------------------------------------

    def request_cancel(self, run_id: str, node: str = "") -> None:
        row = self.state.runs.get(run_id)
        if row is not None and row.status != ev.RUNNING:
            self.notify(f"run {run_id} is {row.status.upper()}: there is nothing to cancel", severity="warning")
            return
        what = f"node {node} of run {run_id}" if node else f"run {run_id}"
        detail = ("The node stops now and is recorded CANCELLED; its caller gets NodeCancelled. If the caller "
                  "catches it, the run goes on; if not, its siblings are cancelled too and the run ends CANCELLED."
                  if node else "Every node of the run stops now; the run is recorded CANCELLED, not FAILED.")
        self._confirm(f"Cancel {what}?", detail, self.backend.cancel, (run_id, node, ""),
                      f"cancel requested: {what}")

    def request_retry(self, run_id: str, node: str) -> None:
        self._confirm(
            f"Retry node {node} of run {run_id}?",
            "Its current attempt ends now and the next one starts with the same inputs.",
            self.backend.retry, (run_id, node), f"retry requested: node {node} of run {run_id}",
        )

    def request_resume(self, run_id: str) -> None:
        row = self.state.runs.get(run_id)
        if row is not None and row.status == ev.RUNNING:
            self.notify(f"run {run_id} is still running", severity="warning")
            return
        from aethergraph.detach import start_resume_async

        # A process of its own (`ag resume RUN`, detached), never a live runtime that happens to
        # be reachable: that one lacks the run's services and takes it down when it ends.
        self._confirm(
            f"Resume run {run_id}?",
            "A new process of its own (ag resume, detached; output next to its log) imports its "
            "entrypoint again and continues it, replaying what it already did.",
            start_resume_async, (self.store.layout, run_id),
            f"resume started: run {run_id} in a process of its own (ag attach {run_id})",
        )

    def _confirm(self, title: str, detail: str, fn, args: tuple, success: str) -> None:
        from .screens.confirm import ConfirmModal

        def decided(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._perform(fn, args, success), group="actions")

        self.push_screen(ConfirmModal(title, detail), decided)

    async def _perform(self, fn, args: tuple, success: str) -> None:
        from aethergraph.runtime.sidecar.client import SidecarError

        try:
            await self.bridge.call(fn, *args)
        except SidecarError as exc:
            self.notify(f"{exc}", title=f"refused ({exc.code})", severity="error", timeout=10)
        except Exception as exc:
            self.notify(f"{type(exc).__name__}: {exc}", title="failed", severity="error", timeout=10)
        else:
            self.notify(success)

    # -- navigation -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a dialog is open its keys are its own: digits pick options, q is a letter.
        if action in ("panel", "quit", "help", "back", "command_palette", "cursor", "yank",
                      "toggle_alerts") and isinstance(
                self.screen, ModalScreen):
            return False
        return True

    def action_panel(self, mode: str) -> None:
        if isinstance(self.screen, ModalScreen):
            return
        if mode == "run" and self.detail is None:
            newest = self.state.ordered()
            if newest:
                self.detail = RunModel(newest[0])
                self._load_detail(newest[0])
        if self.current_mode != mode:
            self._history = self._path_to(mode)
            self.switch_mode(mode)

    def _path_to(self, mode: str) -> list[str]:
        """The panels esc walks back through after going to ``mode``: a path from Runs (the
        top), never a loop. Going to a panel already on the path cuts the path there, so
        1 2 1 2 then esc goes to Runs and stops, instead of flipping between the two."""
        if mode == "runs":
            return []
        path = self._history + [self.current_mode]
        if mode in path:
            return path[: path.index(mode)]
        return path[-8:]

    def action_back(self) -> None:
        """Esc: one panel back along the path; on Runs it does nothing (the top)."""
        if self._history:
            self.switch_mode(self._history.pop())
        elif self.current_mode != "runs":
            self.switch_mode("runs")

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        self.push_screen(HelpScreen(self.screen))

    def action_yank(self) -> None:
        """y: copy the id (or ref) under the cursor to the clipboard through the terminal
        (OSC 52: it reaches the local clipboard over SSH too) and say what was copied."""
        target = getattr(self.screen, "yank_target", None)
        got = target() if target is not None else None
        if not got:
            self.notify("Nothing here to copy.", severity="warning")
            return
        label, text = got
        self.copy_to_clipboard(text)
        self.notify(f"copied {label}: {text}")

    def action_toggle_alerts(self) -> None:
        self.ask_alerts = not self.ask_alerts
        self.notify(f"new-ask alerts (toast and bell) {'on' if self.ask_alerts else 'off'}")

    def action_cursor(self, direction: str) -> None:
        method = getattr(self.focused, f"action_cursor_{direction}", None) or getattr(
            self.focused, f"action_scroll_{direction}", None)
        if method is None:
            raise SkipAction()
        method()

    async def action_quit(self) -> None:
        if self.backend.hosted_running():
            run_ids = ", ".join(self.backend.hosted_rt.runs) if self.backend.hosted_rt else ""

            from .screens.confirm import ConfirmModal

            def decided(yes: bool | None) -> None:
                if yes:
                    self.run_worker(self._quit(), group="quit")

            self.push_screen(ConfirmModal(
                f"Quit and cancel {run_ids}?",
                "This dashboard is running it (ag tui --run); quitting cancels it and records CANCELLED."),
                decided)
            return
        await self._quit()

    async def _quit(self) -> None:
        await self._stop_trio()
        self.exit(self.exit_code())

    def exit_code(self) -> int:
        if self.hosted is None:
            return EXIT_OK
        outcome = self.backend.hosted_outcome
        if outcome is None:
            return EXIT_INTERRUPTED
        if outcome.status == ev.SUCCEEDED:
            return EXIT_OK
        return EXIT_INTERRUPTED if outcome.status == ev.CANCELLED else EXIT_FAILED


# -- command line ---------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="store directory (default: $AETHERGRAPH_HOME or ./.aethergraph)")
    p.add_argument("--run", metavar="TARGET", default=None,
                   help="also run a graph in this process (path/to/file.py:fn or pkg.module:fn)")
    p.add_argument("--input", "-i", metavar="JSON", default=None, help="inputs for --run, as a JSON object")


def _load_hosted(target: str, text: str | None) -> tuple[Any, dict[str, Any]]:
    """The function and inputs for ``--run``, checked as ``ag run`` checks them; ``UsageError``
    with one line for the user."""
    # The dashboard's one reach into aethergraph's API for loading code: ``--run`` runs the
    # user's graph in this process. Imported here, lazily, because only ``--run`` needs it.
    from aethergraph.targets import TargetError, check_inputs, load_target

    inputs = parse_inputs(text)
    try:
        fn = load_target(target)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    check_inputs(fn, inputs)  # typed parameters: refused here, before the dashboard starts
    return fn, inputs


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """``ag tui`` (argparse namespace from the ``ag`` parser) or ``python -m tui ARGS``."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="ag tui", description="The AetherGraph terminal dashboard.")
        add_arguments(parser)
        args = parser.parse_args(list(args) if args is not None else None)
    fn, inputs, where = None, {}, ""
    if args.run:
        try:
            fn, inputs = _load_hosted(args.run, args.input)
        except UsageError as exc:
            print(f"ag: {exc}", file=sys.stderr)
            return EXIT_USAGE
        where = entrypoint(args.run)
    elif args.input is not None:
        print("ag: --input goes with --run TARGET", file=sys.stderr)
        return EXIT_USAGE
    app = AetherGraphApp(home=args.home, run=fn, inputs=inputs, entrypoint=where)
    result = app.run()
    if app.return_code:
        return app.return_code
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
