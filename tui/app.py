"""``ag tui``: the dashboard app — panels, keys, and the glue between trio and Textual.

Layout of responsibilities:

- ``TrioBridge`` runs trio as a guest of Textual's asyncio loop; ``Backend`` is everything done
  in trio (attaching to sidecars, commands, hosting a run with ``--run``). Both post messages.
- ``DashboardState`` / ``RunModel`` hold what is known; the handlers here fold the backend's
  facts in (``reads.StoreReads`` folds in what thread workers read from the store).
- Screens (one per numbered panel, as Textual *modes* so each keeps its place) redraw from the
  state on a 10 Hz tick. What the person asks for they post as intents, which
  ``actions.Actions`` handles (confirmations included); they never call into the app.
- The command line is in ``args`` (shared with ``ag tui``).

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

from textual.actions import SkipAction
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.css.stylesheet import Stylesheet
from textual.screen import ModalScreen

from aethergraph.runtime import events as ev
from aethergraph.runtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, UsageError
from aethergraph.runtime.frontend import entrypoint, parse_inputs
from aethergraph.runtime.info import AskInfo
from aethergraph.runtime.store.layout import StoreLayout, resolve_home
from aethergraph.runtime.textsafe import one_line, visible

from . import screens
from .actions import Actions
from .args import parse as parse_args
from .format import use_no_color
from . import messages as facts  # (what the backend posts: the handlers below fold it in)
from .reads import StoreReads
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
        self.app.post_message(facts.BackendProblem(text, "error" if record.levelno >= logging.ERROR else "warning"))


class _SteadyStylesheet(Stylesheet):
    """Textual's stylesheet, minus the parses that give what it already has.

    ``App.refresh_css`` (run at start by the theme and by the first mode's screen) sets the
    variables, which empties the parse cache even when they are the same, then ``reparse``s
    every source in a fresh stylesheet, whose cache is empty too: app.tcss and every widget's
    DEFAULT_CSS parsed again, on the way to the first paint (B11). Here equal variables keep
    the cache, and a reparse parses in place (``parse`` keeps the old rules if a source fails,
    as the fresh sheet was there for), so only sources not yet parsed with these variables
    are."""

    def set_variables(self, variables: dict[str, str]) -> None:
        if variables != self._variables:
            super().set_variables(variables)

    def reparse(self) -> None:
        self.parse()


def _panel(name: str):
    """A panel's screen, imported when first shown (the first paint needs only Runs)."""

    def make():
        return getattr(screens, name)()

    return make


def _commands_provider():
    from .commands import DashboardCommands  # (the palette: loaded when first opened)

    return DashboardCommands


class AetherGraphApp(Actions, StoreReads, App[int]):
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
        self.stylesheet = _SteadyStylesheet(variables=self.get_css_variables())
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
        self.hosted_result: facts.HostedRunEnded | None = None
        self._history: list[str] = []
        self._log_handler: _NotifyHandler | None = None
        self._stop_task: asyncio.Future | None = None
        self._stopping = False
        self._index_loads = 0
        self.first_paint_s: float | None = None
        self._trio_started = False
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
            # The trio side starts once the first runs page is on screen (``on_index_loaded``):
            # starting it imports trio and the sidecar client, 0.1–0.3 s in which the event
            # loop draws nothing, and on a busy box the index's thread worker can post its page
            # after this first frame (the empty table). An index read slower than a second
            # does not hold trio back longer than that.
            self.set_timer(1.0, self._start_trio)
            # Everything imported and composed so far lives as long as the app: keep it out of
            # the collector's full passes, which otherwise stall the UI for ~100 ms each while
            # a busy run streams events.
            gc.freeze()

    def _start_trio(self) -> None:
        if not self._trio_started and not self._stopping:
            self._trio_started = True
            self.bridge.start()

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

    def on_runtime_attached(self, msg: facts.RuntimeAttached) -> None:
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
            self.read_run_log(d.run_id)

    def on_runtime_detached(self, msg: facts.RuntimeDetached) -> None:
        had_runs = any(rid == msg.runtime_id for rid in self.state.live_runs.values())
        self.state.detach(msg.runtime_id)
        self._counts()
        if had_runs:
            self.notify(f"runtime {msg.runtime_id} went away: {msg.reason}", severity="warning")
        self.load_index()

    def on_live_events(self, msg: facts.LiveEvents) -> None:
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

    def on_hosted_run_started(self, msg: facts.HostedRunStarted) -> None:
        self.sub_title = f"hosting a run (runtime {msg.runtime_id})"

    def on_hosted_run_ended(self, msg: facts.HostedRunEnded) -> None:
        self.hosted_result = msg
        text = f"run {msg.run_id} {msg.status}" + (f": {msg.error}" if msg.error else "")
        self.notify(text, severity="information" if msg.status == ev.SUCCEEDED else "warning", timeout=10)

    def on_backend_problem(self, msg: facts.BackendProblem) -> None:
        self.notify(msg.text, severity=msg.severity, timeout=8)

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
                self.detail = RunModel(newest[0], self.store.layout)
                self.read_run_log(newest[0])
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
        under = self.screen
        name = screens.HelpScreen.installed_name(under)
        if not self.is_screen_installed(name):
            self.install_screen(screens.HelpScreen(under), name)
        self.push_screen(name)

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
        # (no backend yet: trio never started, nothing is hosted, and none is built just to say so)
        if self._backend is not None and self._backend.hosted_running():
            run_ids = ", ".join(self.backend.hosted_rt.runs) if self.backend.hosted_rt else ""
            self._confirm(
                f"Quit and cancel {run_ids}?",
                "This dashboard is running it (ag tui --run); quitting cancels it and records CANCELLED.",
                lambda: self.run_worker(self._quit(), group="quit"))
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


# -- command line (its arguments: args.py) ------------------------------------------------------


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
    """``ag tui`` (argparse namespace from the ``ag`` parser) or ``python -m aethergraph.tui ARGS``."""
    if not isinstance(args, argparse.Namespace):
        args = parse_args(args)
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
