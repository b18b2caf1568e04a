"""Commands that talk to live runtimes through their sidecars: ``ag tail``, ``ag asks``,
``ag answer``, ``ag cancel``, ``ag retry`` and ``ag runs --live``.

Each finds live runtimes through the store's adverts. When none is reachable it says so in one
line and exits 2.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import msgspec

from .history_cmds import _dur, _event_line, _layout, _when, table
from .main import EXIT_OK, EXIT_RUN_FAILED, CliError


def _run(main) -> Any:
    import trio

    from runtime.sidecar.client import NoRuntime, SidecarError

    try:
        return trio.run(main)
    except NoRuntime as exc:
        raise CliError(str(exc)) from None
    except SidecarError as exc:
        raise CliError(f"{exc} ({exc.code})") from None


def cmd_live_runs(args: Any) -> int:
    from runtime.sidecar.client import each_runtime

    _layout(args.home)

    async def main():
        return [r for rs in await each_runtime(args.home, lambda c: c.list_runs()) for r in rs]

    runs = _run(main)
    if args.json:
        print(msgspec.json.encode(runs).decode())
        return EXIT_OK
    if not runs:
        print("no live runs")
        return EXIT_OK
    now = time.time()
    rows = [[r.run_id, r.graph, "RUNNING", _when(r.started), _dur(now - r.started), str(r.pending_asks or "")]
            for r in sorted(runs, key=lambda r: -r.started)]
    print(table(rows, ["RUN", "GRAPH", "STATUS", "STARTED", "DURATION", "ASKS"]))
    return EXIT_OK


def cmd_asks(args: Any) -> int:
    from runtime.sidecar.client import each_runtime, find_runtimes

    _layout(args.home)
    if not find_runtimes(args.home):
        raise CliError("no live runtime found in this store (asks are answered while their run is live)")

    async def main():
        return [a for asks in await each_runtime(args.home, lambda c: c.list_asks()) for a in asks]

    asks = sorted(_run(main), key=lambda a: a.opened)
    if args.json:
        print(msgspec.json.encode(asks).decode())
        return EXIT_OK
    if not asks:
        print("no pending asks")
        return EXIT_OK
    now = time.time()
    rows = []
    for a in asks:
        left = "-" if a.timeout_s is None else _dur(max(0.0, a.opened + a.timeout_s - now))
        rows.append([a.ask_id, a.run_id, a.node, a.kind, a.prompt + (f" {a.options}" if a.options else ""), left])
    print(table(rows, ["ASK", "RUN", "NODE", "KIND", "PROMPT", "EXPIRES IN"]))
    return EXIT_OK


def cmd_answer(args: Any) -> int:
    from runtime.sidecar.client import NoRuntime, SidecarClient, SidecarError, find_runtimes

    layout = _layout(args.home)
    adverts = find_runtimes(args.home)

    async def main():
        for advert in adverts:
            try:
                async with SidecarClient.connect(advert, client="ag answer") as c:
                    if any(a.ask_id == args.ask_id for a in await c.list_asks()):
                        return await c.answer(args.ask_id, args.value)
            except SidecarError as exc:
                if exc.code in ("invalid_answer", "unknown_ask"):
                    raise
            except OSError:
                continue
        raise NoRuntime(f"no live runtime has an open ask {args.ask_id}")

    try:
        answer = _run(main)
    except CliError as live_error:
        # Nobody live has it: maybe its run was interrupted. The answer then waits in the
        # run's log for `ag resume`.
        from runtime.errors import InvalidAnswer

        from ..resume import CannotResume, answer_offline

        try:
            run_id, answer = answer_offline(layout, args.ask_id, args.value)
        except CannotResume as exc:
            raise CliError(f"{live_error}; {exc}" if adverts else str(exc)) from None
        except InvalidAnswer as exc:
            raise CliError(f"invalid answer: {exc}") from None
        print(f"answered {args.ask_id}: {answer} (run {run_id} is not running; `ag resume {run_id}` uses it)")
        return EXIT_OK
    print(f"answered {args.ask_id}: {answer}")
    return EXIT_OK


def cmd_cancel(args: Any) -> int:
    from runtime.sidecar.client import connect_for_run

    _layout(args.home)

    async def main():
        async with connect_for_run(args.home, args.run_id, client="ag cancel") as c:
            await c.cancel(args.run_id, args.node or "", args.reason or "")

    _run(main)
    what = f"node {args.node} of run {args.run_id}" if args.node else f"run {args.run_id}"
    print(f"cancel requested: {what}")
    return EXIT_OK


def cmd_retry(args: Any) -> int:
    from runtime.sidecar.client import connect_for_run

    _layout(args.home)

    async def main():
        async with connect_for_run(args.home, args.run_id, client="ag retry") as c:
            await c.retry(args.run_id, args.node)

    _run(main)
    print(f"retry requested: node {args.node} of run {args.run_id}")
    return EXIT_OK


def cmd_tail(args: Any) -> int:
    """Follow a run: what it has done so far, then live, until it ends."""
    from runtime import events as ev
    from runtime.errors import UnknownRun
    from runtime.history import summarize
    from runtime.ids import is_run_id
    from runtime.sidecar.client import connect_for_run
    from runtime.store.logfile import read_events
    from runtime.textsafe import one_line

    layout = _layout(args.home)
    if not is_run_id(args.run_id):
        raise CliError(f"unknown run id: {args.run_id}")
    try:
        path = layout.existing_run_log(args.run_id)
    except UnknownRun:
        path = None
    status: dict[str, Any] = {"last_seq": 0}

    def show(e: ev.Event) -> None:
        if e.seq <= status["last_seq"]:
            return
        status["last_seq"] = e.seq
        print(one_line(f"{_when(e.ts)}  {type(e).__struct_config__.tag:<16}  {e.node or '-':<28}  {_event_line(e)}"),
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
        summary = summarize(args.run_id, events)
        if summary.status in ("running", "interrupted"):
            raise CliError(f"run {args.run_id} is not running in any live runtime ({summary.status})") from None
        for e in events:
            show(e)
        status["status"] = summary.status
    except KeyboardInterrupt:
        return 130
    print(f"run {args.run_id} {status.get('status', 'ended')}", file=sys.stderr)
    return EXIT_OK if status.get("status") == "succeeded" else EXIT_RUN_FAILED


def _run_tail(main) -> None:
    import trio

    from runtime.sidecar.client import NoRuntime, SidecarError

    try:
        trio.run(main)
    except NoRuntime as exc:
        raise CliError(str(exc)) from None
    except SidecarError as exc:
        raise CliError(f"the runtime went away: {exc}") from None
