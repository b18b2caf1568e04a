"""Commands that talk to live runtimes through their sidecars: ``ag tail``, ``ag asks``,
``ag answer``, ``ag cancel``, ``ag retry`` and ``ag runs --live``.

Each finds live runtimes through the store's adverts. When none is reachable it says so in one
line and exits 2.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed

from aethergraph.runtime import events as ev
from aethergraph.runtime.asks import store_paths
from aethergraph.runtime.describe import describe, dur, tag, when
from aethergraph.runtime.errors import InvalidAnswer, UnknownAsk, UnknownRun
from aethergraph.runtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED
from aethergraph.runtime.history import effective_status, summarize
from aethergraph.runtime.sidecar.client import (
    LIVE,
    NoRuntime,
    SidecarClient,
    SidecarError,
    connect_for_run,
    each_runtime,
    find_runtimes,
)
from aethergraph.runtime.store.artifacts import BlobStore
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.logfile import read_events
from aethergraph.runtime.textsafe import one_line

from ..console import ConsolePrinter, _out, _write_prompt, answered_files, stdin_lines
from ..interrupted import CannotResume, answer_offline
from .history_cmds import CONTROL, _layout, print_runs, said_all, table
from .main import CliError


def _run(main) -> Any:
    try:
        return trio.run(main)
    except NoRuntime as exc:
        raise CliError(str(exc)) from None
    except SidecarError as exc:
        raise CliError(f"{exc} ({exc.code})") from None


def cmd_live_runs(args: Any) -> int:
    _layout(args.home)

    async def main():
        return [r for rs in await each_runtime(args.home, lambda c: c.list_runs()) for r in rs]

    runs = _run(main)
    if said_all(args, runs, "no live runs"):
        return EXIT_OK
    now = time.time()
    print_runs((r.run_id, r.graph, ev.RUNNING, r.started, r.duration(now), r.pending_asks)
               for r in sorted(runs, key=lambda r: -(r.started or 0.0)))
    return EXIT_OK


INTERRUPTED_NOTE = "interrupted: the answer is kept for the resume"


def _interrupted_asks(layout) -> list[Any]:
    """Open asks of runs whose process is gone, from the index: ``ag answer`` keeps an answer
    in the run's log for ``ag resume``. The same asks ``ag runs`` counts in its ASKS column."""

    index = Index(layout)
    try:
        index.catch_up()  # a reader's catch-up: the index is derived from the logs
        rows = index.open_asks()
        runs = {r.run_id: r for r in index.runs(run_ids=sorted({a.run_id for a in rows}))} if rows else {}
    finally:
        index.close()
    out = []
    for a in rows:
        r = runs.get(a.run_id)
        if r is not None and effective_status(r.status, r.host, r.run_id, layout) == ev.INTERRUPTED:
            out.append(a)
    return out


def cmd_asks(args: Any) -> int:
    layout = _layout(args.home)
    live: list[Any] = []
    if find_runtimes(args.home):

        async def main():
            return [a for asks in await each_runtime(args.home, lambda c: c.list_asks()) for a in asks]

        live = _run(main)
    seen = {a.ask_id for a in live}
    offline = [a for a in _interrupted_asks(layout) if a.ask_id not in seen]
    if not live and not offline and not find_runtimes(args.home):
        raise CliError("no live runtime found in this store, and no interrupted run waits for an answer")
    asks = sorted([(a, "running") for a in live] + [(a, "interrupted") for a in offline], key=lambda x: x[0].opened)
    if said_all(args, [{**msgspec.to_builtins(a), "run_status": s} for a, s in asks], "no pending asks"):
        return EXIT_OK
    now = time.time()
    rows = []
    for a, run_status in asks:
        left = a.remaining(now)
        left = INTERRUPTED_NOTE if run_status == "interrupted" else "-" if left is None else dur(left)
        prompt = a.prompt + (f" {a.options}" if a.options else "")
        rows.append([a.ask_id, a.run_id, a.node, a.kind, prompt, left])
    print(table(rows, ["ASK", "RUN", "NODE", "KIND", "PROMPT", "EXPIRES IN"]))
    return EXIT_OK


class _Refused(CliError):
    """A file this process refused before any runtime saw it: said as it is."""


def _file_answer(layout, ask_id: str, kind: str, spec: Any, files: list[str]) -> str:
    """``ag answer ASK --file PATH``: the files checked here and copied into the store (this
    process shares the store with the run); the answer sent is what was stored."""

    if kind != "files":
        raise _Refused(f"ask {ask_id} is a {kind} ask: answer it with a value, not --file")
    try:
        return store_paths(BlobStore(layout), files, spec)
    except InvalidAnswer as exc:
        raise _Refused(f"refused: {exc} (the ask stays open)") from None


def _offline_file_spec(layout, ask_id: str) -> Any:
    """The full spec of an interrupted run's files ask, from its ``ask_opened`` event."""
    for a in _interrupted_asks(layout):
        if a.ask_id == ask_id:
            for e in read_events(layout.existing_run_log(a.run_id), warn=False):
                if type(e) is ev.AskOpened and e.ask_id == ask_id:
                    return e.ask_kind, e.files or ev.FileAskSpec(accept=list(e.options))
    return None, None


def cmd_answer(args: Any) -> int:
    layout = _layout(args.home)
    adverts = find_runtimes(args.home)
    if bool(args.file) == (args.value is not None):
        raise CliError("give either a VALUE or --file PATH (repeatable), not both" if args.file
                       else "give the answer: a VALUE, or --file PATH for a files ask")

    async def main():

        for advert in adverts:
            try:
                async with SidecarClient.connect(advert, client="ag answer") as c:
                    ask = next((a for a in await c.list_asks() if a.ask_id == args.ask_id), None)
                    if ask is not None:
                        value = args.value
                        if args.file:
                            # Count and size limits are the runtime's to check (it knows them).
                            spec = ev.FileAskSpec(accept=list(ask.options), multiple=True, max_bytes=1 << 62)
                            value = await trio.to_thread.run_sync(
                                _file_answer, layout, args.ask_id, ask.kind, spec, args.file)
                        return await c.answer(args.ask_id, value)
            except (InvalidAnswer, UnknownAsk):
                raise
            except (SidecarError, OSError):
                continue
        raise NoRuntime(f"no live runtime has an open ask {args.ask_id}")

    try:
        answer = _run(main)
    except CliError as live_error:
        if isinstance(live_error, _Refused):
            raise
        # Nobody live has it: maybe its run was interrupted. The answer then waits in the
        # run's log for `ag resume`.


        try:
            value = args.value
            if args.file:
                kind, spec = _offline_file_spec(layout, args.ask_id)
                if kind is None:
                    raise CannotResume(f"no open ask {args.ask_id} in this store")
                value = _file_answer(layout, args.ask_id, kind, spec, args.file)
            run_id, answer = answer_offline(layout, args.ask_id, value)
        except CannotResume as exc:
            raise CliError(f"{live_error}; {exc}" if adverts else str(exc)) from None
        except InvalidAnswer as exc:
            raise CliError(f"invalid answer: {exc}") from None
        shown = answered_files(answer) if args.file else answer
        print(f"answered {args.ask_id}: {shown} (run {run_id} is not running; `ag resume {run_id}` uses it)")
        return EXIT_OK
    print(f"answered {args.ask_id}: {answered_files(answer) if args.file else answer}")
    return EXIT_OK


def cmd_cancel(args: Any) -> int:
    what = f"node {args.node} of run {args.run_id}" if args.node else f"run {args.run_id}"
    return _request(args, "cancel", what, lambda c: c.cancel(args.run_id, args.node or "", args.reason or ""))


def cmd_retry(args: Any) -> int:
    return _request(args, "retry", f"node {args.node} of run {args.run_id}", lambda c: c.retry(args.run_id, args.node))


def _request(args: Any, verb: str, what: str, send: Any) -> int:
    """Send one command to the runtime that runs ``args.run_id`` and say it was asked for."""
    _layout(args.home)

    async def main():
        async with connect_for_run(args.home, args.run_id, client=f"ag {verb}") as c:
            await send(c)

    _run(main)
    print(f"{verb} requested: {what}")
    return EXIT_OK


def cmd_tail(args: Any) -> int:
    """Follow a run: what it has done so far, then live, until it ends."""
    layout = _layout(args.home)
    try:
        path = layout.existing_run_log(args.run_id)
    except UnknownRun:  # not (yet) on disk, or not a run id at all
        path = None
    status: dict[str, Any] = {"last_seq": 0}

    def show(e: ev.Event) -> None:
        if e.seq <= status["last_seq"]:
            return
        status["last_seq"] = e.seq
        print(one_line(f"{when(e.ts)}  {tag(e):<16}  {e.node or '-':<28}  {describe(e)}"),
              flush=True)

    async def main():
        async with connect_for_run(args.home, args.run_id, client="ag tail") as c:
            async with c.subscribe(args.run_id) as events:
                async for e in events:
                    show(e)
                    if type(e) is ev.RunFinished:
                        status["status"] = e.status
                        return

    try:
        _run_tail(main)
    except CliError:
        # Not live anywhere: a finished run is shown from its log; anything else is an error.
        if path is None:
            raise CliError(f"unknown run id: {args.run_id}") from None
        events = read_events(path, warn=False)
        summary = summarize(args.run_id, events, layout)
        if summary.status in ("running", "interrupted"):
            raise CliError(f"run {args.run_id} is not running in any live runtime ({summary.status})") from None
        for e in events:
            show(e)
        status["status"] = summary.status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print(f"run {args.run_id} {status.get('status', 'ended')}", file=sys.stderr)
    return EXIT_OK if status.get("status") == "succeeded" else EXIT_RUN_FAILED


def _run_tail(main) -> None:
    try:
        trio.run(main)
    except NoRuntime as exc:
        raise CliError(str(exc)) from None
    except SidecarError as exc:
        raise CliError(f"the runtime went away: {exc}") from None


class _CleanOut:
    """stdout for what a run says: its text is untrusted, and control characters (escape
    sequences) reaching this person's terminal could retitle, recolour or rewrite it."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text.translate(CONTROL))

    def flush(self) -> None:
        sys.stdout.flush()


def cmd_attach(args: Any) -> int:
    """Follow a live run's console (messages, progress, logs, asks) and answer its asks here.

    The run does not belong to this terminal: Ctrl-C (or a hang-up) detaches, and never
    cancels it. An answer is checked by the runtime, as the console checks one: a refused
    answer is explained and the ask stays open for the next line."""




    layout = _layout(args.home)
    run_id = args.run_id
    try:
        path = layout.existing_run_log(run_id)
    except UnknownRun:
        raise CliError(f"unknown run id: {run_id}") from None
    status: dict[str, Any] = {}
    out = _CleanOut()
    printer = ConsolePrinter(out)
    lines = stdin_lines()
    tty = lines.isatty()
    open_asks: dict[str, ev.AskOpened] = {}
    state: dict[str, Any] = {"live": False, "current": None, "shown": ""}

    async def follow(c: Any) -> None:
        changed = [trio.Event()]

        def poke() -> None:
            changed[0].set()
            changed[0] = trio.Event()

        async def asker() -> None:
            while True:
                while not (state["live"] and open_asks):
                    await changed[0].wait()
                ask = next(iter(open_asks.values()))
                with trio.CancelScope() as scope:
                    state["current"] = (ask.ask_id, scope)
                    if state["shown"] != ask.ask_id:
                        printer(ask)  # say again which question the next line answers
                    state["shown"] = ""
                    if tty:
                        _write_prompt("> ", None)
                    line = await lines.readline()
                    if line is None:
                        _out("(stdin is closed: not answering here; `ag answer ASK VALUE` answers from anywhere)")
                        return
                    if not tty:
                        _out(f"> {line}", out)
                    try:
                        await c.answer(ask.ask_id, line)
                        open_asks.pop(ask.ask_id, None)
                    except InvalidAnswer as exc:
                        _out(f"✗ {exc}", out)
                        state["shown"] = ask.ask_id
                    except SidecarError:  # answered elsewhere meanwhile, or expired
                        open_asks.pop(ask.ask_id, None)
                state["current"] = None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(asker)
            async with c.subscribe(run_id, live_marker=True) as events:
                async for e in events:
                    if e is LIVE:
                        state["live"] = True
                        _out(f"— attached to run {run_id} (Ctrl-C detaches; the run goes on) —")
                        poke()
                        continue
                    t = type(e)
                    if t is ev.Log:
                        _out(f"[{e.level}] {e.message}", out)
                    elif t in ConsolePrinter.TYPES:
                        printer(e)
                    if t is ev.AskOpened:
                        open_asks[e.ask_id] = e
                        state["shown"] = e.ask_id
                        poke()
                    elif t is ev.AskAnswered or t is ev.AskExpired:
                        open_asks.pop(e.ask_id, None)
                        cur = state["current"]
                        if cur is not None and cur[0] == e.ask_id:
                            if tty:
                                _out("")
                            cur[1].cancel()
                        poke()
                    elif t is ev.RunFinished:
                        status["status"] = e.status
                        status["error"] = str(e.error) if e.error else ""
                        break
            nursery.cancel_scope.cancel()

    async def on_signals(scope: trio.CancelScope, *, task_status: Any) -> None:
        # Ctrl-C or a hang-up: leave. The run is another process's; nothing is sent to it.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for _ in signals:
                status["detached"] = True
                scope.cancel()
                return

    async def main() -> None:
        with trio.CancelScope() as outer:
            async with trio.open_nursery() as top:
                await top.start(on_signals, outer)
                try:
                    async with connect_for_run(args.home, run_id, client="ag attach") as c:
                        await follow(c)
                except* (NoRuntime, SidecarError, ConnectionClosed, OSError) as group:
                    status["gone"] = group.exceptions[0]
                top.cancel_scope.cancel()

    trio.run(main)
    if status.get("detached"):
        try:  # after a hang-up there may be no terminal left to say it to
            print(f"\ndetached from run {run_id}; it goes on (`ag attach {run_id}` comes back)", file=sys.stderr)
        except OSError:
            pass
        return EXIT_OK
    if "status" not in status:
        summary = summarize(run_id, read_events(path, warn=False), layout)
        if summary.status == "running":
            raise CliError(f"run {run_id} is not reachable: {status.get('gone')}")
        if summary.status == "interrupted":
            raise CliError(f"run {run_id} is not running (INTERRUPTED): `ag resume {run_id}` continues it")
        status["status"], status["error"] = summary.status, summary.error
        if state["live"] is False:
            raise CliError(f"run {run_id} is not running ({summary.status.upper()}): `ag show {run_id}` has what it did")
    line = f"run {run_id} {status['status']}" + (f": {status['error']}" if status.get("error") else "")
    print(line, file=sys.stderr)
    return EXIT_OK if status["status"] == "succeeded" else EXIT_RUN_FAILED
