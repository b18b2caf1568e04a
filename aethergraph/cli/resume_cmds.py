"""``ag resume RUN`` and ``ag retry RUN``: durable execution from the command line."""

from __future__ import annotations

from typing import Any

from .history_cmds import _layout
from .main import EXIT_INTERRUPTED, CliError
from .run_cmd import report


def _execute(args: Any, work) -> int:
    import trio

    from runtime.errors import UnknownRun

    from ..api import open_runtime
    from ..resume import CannotResume
    from ..targets import TargetError

    from .run_cmd import EXIT_HUNG_UP, watch_hangup

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
    from ..resume import resume

    return _execute(args, lambda rt: resume(rt, args.run_id))


def cmd_retry_run(args: Any) -> int:
    from ..resume import retry

    return _execute(args, lambda rt: retry(rt, args.run_id, fresh=args.fresh))
