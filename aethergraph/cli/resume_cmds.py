"""``ag resume RUN`` and ``ag retry RUN``: durable execution from the command line."""

from __future__ import annotations

import sys
from typing import Any

import trio

from aethergraph.runtime.errors import UnknownRun
from aethergraph.runtime.exits import EXIT_HUNG_UP, EXIT_INTERRUPTED, EXIT_OK

from ..api import open_runtime
from ..detach import DetachFailed, start_resume
from ..resume import CannotResume, check_resumable, read_run, resume, retry
from ..targets import TargetError
from .history_cmds import _layout
from .main import CliError
from .run_cmd import report, watch_hangup


def _execute(args: Any, work) -> int:
    _layout(args.home)
    outcome = None
    interrupted = False
    hung_up: list[bool] = []

    async def main() -> None:
        nonlocal outcome, interrupted
        async with open_runtime(home=args.home, answers=args.answer) as rt:
            await rt.service_nursery.start(watch_hangup, rt, hung_up)
            outcome = await work(rt)
            interrupted = rt.interrupted

    try:
        trio.run(main)
    except (CannotResume, TargetError) as exc:
        raise CliError(str(exc)) from None
    except UnknownRun as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        interrupted = True
    if hung_up:
        return EXIT_HUNG_UP
    if outcome is None:
        return EXIT_INTERRUPTED
    return report(outcome, interrupted, as_json=getattr(args, "json", False))


def cmd_resume(args: Any) -> int:
    if getattr(args, "detach", False):
        return _resume_detached(args)

    return _execute(args, lambda rt: resume(rt, args.run_id))


def cmd_retry_run(args: Any) -> int:
    return _execute(args, lambda rt: retry(rt, args.run_id, fresh=args.fresh))


def _resume_detached(args: Any) -> int:
    """``ag resume RUN --detach``: the same resume, in a process of its own session."""
    layout = _layout(args.home)
    try:
        check_resumable(args.run_id, read_run(layout, args.run_id), layout)
        d = start_resume(layout, args.run_id, answers=args.answer)
    except (CannotResume, UnknownRun, DetachFailed) as exc:
        raise CliError(str(exc)) from None
    print(args.run_id)
    print(f"run {args.run_id} resuming in process {d.pid} of its own\n"
          f"  ag attach {args.run_id}   follow it and answer its asks (Ctrl-C detaches; the run goes on)\n"
          f"  output: {d.output}", file=sys.stderr)
    return EXIT_OK
