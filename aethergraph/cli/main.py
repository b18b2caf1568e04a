"""``ag``: run graphs and look at what runs did.

Only argparse (``args.py``) is read up front. The command dispatch is this module's one lazy
spot: each command's module is imported when that command runs (``_COMMANDS``), so ``ag --help``
stays fast. Usage errors (a bad target, bad JSON, an unknown run id) print one line and exit 2.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aethergraph.runtime.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, UsageError

from .args import build_parser, not_utf8

# The CLI's name for a usage error (the same class the dashboard catches).
CliError = UsageError

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_RUN_FAILED", "EXIT_USAGE", "CliError", "build_parser", "main"]


def environment_error(exc: BaseException) -> str | None:
    """One line for a failure of the machine or the store rather than of our code (a full
    disk, an unreadable file, a refused socket folder, an index SQLite cannot write), or None.

    Checked by type through ``sys.modules`` so nothing is imported for it up front."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # a nursery's wrapping around one error
    errors = sys.modules.get("aethergraph.runtime.errors")
    if errors is not None and isinstance(exc, errors.AetherGraphError):
        return f"{type(exc).__name__}: {exc}"
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        return f"the store's database: {exc} (SQLite {type(exc).__name__})"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


# Which function runs a command: (module, function), the module relative to this package
# unless absolute. Imported only when its command runs (``ag tui`` loads the dashboard then).
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": (".run_cmd", "cmd_run"),
    "runs": (".history_cmds", "cmd_runs"),
    "live-runs": (".live_cmds", "cmd_live_runs"),
    "resume": (".resume_cmds", "cmd_resume"),
    "retry-run": (".resume_cmds", "cmd_retry_run"),
    "tail": (".live_cmds", "cmd_tail"),
    "attach": (".live_cmds", "cmd_attach"),
    "asks": (".live_cmds", "cmd_asks"),
    "answer": (".live_cmds", "cmd_answer"),
    "cancel": (".live_cmds", "cmd_cancel"),
    "retry": (".live_cmds", "cmd_retry"),
    "show": (".history_cmds", "cmd_show"),
    "memory": (".store_cmds", "cmd_memory_query"),
    "artifacts": (".store_cmds", "cmd_artifacts"),
    "index": (".store_cmds", "cmd_index"),
    "check": (".store_cmds", "cmd_check"),
    "tui": ("aethergraph.tui.app", "main"),
    "graph": (".graph_cmd", "cmd_graph"),
    "jobs": (".jobs_cmds", "cmd_jobs"),
    "web": (".web_cmd", "cmd_web"),
}


def _command(args: Any) -> Callable[[Any], int]:
    """The function that runs ``args.command``, its module imported now."""
    name = args.command
    if name == "runs" and args.live:
        name = "live-runs"
    elif name == "retry" and not args.node:
        name = "retry-run"  # a whole run again, not one live node
    module, function = _COMMANDS[name]
    return getattr(importlib.import_module(module, __package__), function)


def _reads_index(args: Any) -> bool:
    """Commands that only read the index (and the logs): safe to run again from the start."""
    c = args.command
    return (c == "runs" and not args.live) or c in ("check", "memory") or (
        c == "artifacts" and args.artifacts_command == "ls")


def _damaged_index(args: Any, exc: BaseException) -> bool:
    """Damage SQLite found in the index only while reading it (a bad page): set it aside so
    the command, run again, rebuilds it from the logs. A read command only: nothing twice."""
    index = sys.modules.get("aethergraph.runtime.store.index")
    if index is None or not _reads_index(args) or not index.is_corruption(exc):
        return False
    layout = index.StoreLayout.at(args.home)  # loaded with the index: nothing to import
    aside = index.set_aside(layout)
    print(f"ag: warning: the index is damaged ({exc}); set aside as "
          f"{aside.name if aside else '(already)'}; rebuilding it from the logs", file=sys.stderr)
    fresh = index.Index(layout)
    try:
        fresh.catch_up()
    finally:
        fresh.close()
    return True


def main(argv: Sequence[str] | None = None, *, _again: bool = False) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    bad = not_utf8(args)
    if bad is not None:
        print(f"ag: {bad} is not valid UTF-8", file=sys.stderr)
        return EXIT_USAGE
    if args.command not in _COMMANDS:
        parser.error(f"unknown command {args.command!r}")
    try:
        return _command(args)(args)
    except CliError as exc:
        print(f"ag: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `ag runs | head`
        return EXIT_OK
    except Exception as exc:
        if not _again and _damaged_index(args, exc):
            return main(argv, _again=True)
        line = environment_error(exc)
        if line is None:
            raise  # a bug of ours: the traceback is what a report needs
        print(f"ag: {line}", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
