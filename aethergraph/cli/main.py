"""``ag``: run graphs and look at what runs did.

Only argparse is imported up front; each command imports what it needs, so ``ag --help`` stays
fast. Usage errors (a bad target, bad JSON, an unknown run id) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A problem with what the user asked for: one line on stderr, exit 2."""


# Arguments that name files: any bytes the file system accepts are fine there.
_PATH_ARGS = frozenset({"home", "path", "input_file"})
_POSITIONAL = frozenset({"target", "run_id", "ask_id", "value", "node", "ref"})


def not_utf8(args: argparse.Namespace) -> str | None:
    """The first argument that is not valid UTF-8 (Python hands such bytes over as lone
    surrogates, which nothing can encode: not the log, not SQLite, not the wire)."""
    for dest, value in vars(args).items():
        if dest in _PATH_ARGS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return dest if dest in _POSITIONAL else "--" + dest.replace("_", "-")
    return None


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


def _count(text: str) -> int:
    """A --limit: a whole number of at least 1 (0 or less would silently mean "everything")."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="store directory (default: $AETHERGRAPH_HOME or ./.aethergraph)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ag",
        description="AetherGraph: run graphs, and see what runs did.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run a graph function as a new run")
    p.add_argument("target", help="path/to/file.py:function or package.module:function")
    p.add_argument("--input", "-i", default=None, metavar="JSON", help="inputs as a JSON object")
    p.add_argument("--input-file", default=None, metavar="PATH",
                   help="inputs as a JSON object in a file ('-': stdin); --input keys override it")
    p.add_argument("--max-concurrency", type=_count, default=None, metavar="N",
                   help="a @graphify graph: at most N of its nodes at once")
    p.add_argument(
        "--answer", "-a", action="append", default=[], metavar="TEXT",
        help="answer the run's asks, in order (repeatable); for scripts and CI",
    )
    p.add_argument("--durability", choices=("strict", "batch", "off"), default=None)
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    p.add_argument(
        "--run-id", default=None, metavar="ID",
        help="the run's id (e.g. nightly-2026-12-01: a-z 0-9 . _ -): a new id starts the run, an "
             "interrupted one resumes it, a finished one prints its recorded outcome and runs nothing",
    )
    p.add_argument(
        "--detach", "-d", action="store_true",
        help="run in a process of its own session (a hang-up does not reach it), print the run id "
             "and exit; follow it with `ag attach RUN`",
    )
    _add_home(p)

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--limit", "-n", type=_count, default=50)
    p.add_argument("--live", action="store_true", help="only runs executing in live runtimes")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    _add_home(p)

    p = sub.add_parser("tail", help="follow a run's events live; exits when the run ends")
    p.add_argument("run_id")
    _add_home(p)

    p = sub.add_parser(
        "attach",
        help="follow a live run's console and answer its asks here; Ctrl-C detaches (the run goes on)",
    )
    p.add_argument("run_id")
    _add_home(p)

    p = sub.add_parser("asks", help="pending asks, with their ids: of live runs, and of interrupted runs "
                                     "(answered, they are kept for the resume)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    _add_home(p)

    p = sub.add_parser("answer", help="answer a pending ask")
    p.add_argument("ask_id")
    p.add_argument("value", nargs="?")
    p.add_argument("--file", "-f", action="append", default=[], metavar="PATH",
                   help="answer a files ask with this file (repeatable); it is copied into the store")
    _add_home(p)

    p = sub.add_parser(
        "cancel", help="cancel a live run, or one node of it",
        description="Cancel a live run (every node stops; the run is recorded CANCELLED, not "
        "FAILED), or one node of it. A cancelled node stops with its children and is recorded "
        "CANCELLED; its caller gets NodeCancelled. If the caller catches it, the caller and "
        "its siblings go on. If not, it behaves like any exception in a nursery: the siblings "
        "are cancelled, the caller ends CANCELLED too, and at the top the run ends CANCELLED.",
    )
    p.add_argument("run_id")
    p.add_argument("node", nargs="?", default="", help="node path, e.g. graph/tool")
    p.add_argument("--reason", default="", help="recorded with the cancellation")
    _add_home(p)

    p = sub.add_parser(
        "retry",
        help="RUN NODE: end a live node's attempt and start the next; RUN: re-run a finished run",
    )
    p.add_argument("run_id")
    p.add_argument("node", nargs="?", default="", help="node path, e.g. graph/poll_job")
    p.add_argument("--fresh", action="store_true", help="re-run every tool (no replay)")
    p.add_argument("--answer", "-a", action="append", default=[], metavar="TEXT")
    _add_home(p)

    p = sub.add_parser("resume", help="continue an interrupted run, replaying what it already did")
    p.add_argument("run_id")
    p.add_argument("--answer", "-a", action="append", default=[], metavar="TEXT",
                   help="answers for asks it opens, in order")
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    p.add_argument("--detach", "-d", action="store_true",
                   help="resume in a process of its own session, print how to follow it, and exit")
    _add_home(p)

    p = sub.add_parser("show", help="one run's timeline")
    p.add_argument("run_id")
    p.add_argument("--trace", action="store_true", help="also print the stored traceback of each failure")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    _add_home(p)

    p = sub.add_parser("memory", help="query memory events across runs")
    msub = p.add_subparsers(dest="memory_command", metavar="SUBCOMMAND", required=True)
    q = msub.add_parser("query", help="events matching every filter given, newest first")
    q.add_argument("--kind", "-k", action="append", default=[], help="repeatable: any of these kinds")
    q.add_argument("--tag", "-t", action="append", default=[], help="repeatable: all of these tags")
    q.add_argument("--entity", "-e", action="append", default=[], help="repeatable: all of these")
    q.add_argument("--run", help="only this run")
    q.add_argument("--graph", help="only runs of this graph")
    q.add_argument("--node", help="only this node path")
    q.add_argument("--since", help="2h, 7d, an ISO time or epoch seconds")
    q.add_argument("--until", help="same forms as --since")
    q.add_argument("--text", help="full-text: every word must appear")
    q.add_argument("--limit", "-n", type=_count, default=50)
    q.add_argument("--order", choices=("desc", "asc"), default="desc")
    q.add_argument("--json", action="store_true", help="one JSON event per line")
    _add_home(q)

    p = sub.add_parser("artifacts", help="list, print or export artifacts")
    asub = p.add_subparsers(dest="artifacts_command", metavar="SUBCOMMAND", required=True)
    a = asub.add_parser("ls", help="artifacts with their provenance, newest first")
    a.add_argument("--run")
    a.add_argument("--kind")
    a.add_argument("--limit", "-n", type=_count, default=100)
    a.add_argument("--json", action="store_true")
    _add_home(a)
    a = asub.add_parser("cat", help="write an artifact's bytes to stdout")
    a.add_argument("ref", help="ag://artifact/<sha256> (or the bare sha256)")
    _add_home(a)
    a = asub.add_parser("export", help="copy an artifact to PATH (a folder: under its name)")
    a.add_argument("ref")
    a.add_argument("path")
    a.add_argument("--force", action="store_true", help="overwrite an existing file")
    _add_home(a)

    p = sub.add_parser("index", help="the SQLite index derived from the logs")
    isub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND", required=True)
    r = isub.add_parser("rebuild", help="rebuild the index from the logs alone")
    _add_home(r)

    from aethergraph.tui import args as tui_args  # argparse only: --help stays fast

    tui_args.add_arguments(sub.add_parser("tui", help=tui_args.HELP))

    from .graph_cmd import add_parser as add_graph_parser

    add_graph_parser(sub)

    from .jobs_cmds import add_parser as add_jobs_parser

    add_jobs_parser(sub, _add_home)
    p = sub.add_parser("web", help="the dashboard in a browser: token-protected, loopback by default")
    from .web_cmd import add_arguments as web_arguments  # argparse only: --help stays fast

    web_arguments(p)

    p = sub.add_parser("check", help="verify the logs against the index; report, never fix")
    p.add_argument("--verify-blobs", action="store_true", help="also re-hash every artifact blob")
    _add_home(p)
    return parser


def _reads_index(args: argparse.Namespace) -> bool:
    """Commands that only read the index (and the logs): safe to run again from the start."""
    c = args.command
    return (c == "runs" and not args.live) or c in ("check", "memory") or (
        c == "artifacts" and args.artifacts_command == "ls")


def _damaged_index(args: argparse.Namespace, exc: BaseException) -> bool:
    """Damage SQLite found in the index only while reading it (a bad page): set it aside so
    the command, run again, rebuilds it from the logs. A read command only: nothing twice."""
    index = sys.modules.get("aethergraph.runtime.store.index")
    if index is None or not _reads_index(args) or not index.is_corruption(exc):
        return False
    from aethergraph.runtime.store.layout import StoreLayout

    layout = StoreLayout.at(args.home)
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
    try:
        if args.command == "run":
            from .run_cmd import cmd_run

            return cmd_run(args)
        if args.command == "runs":
            if args.live:
                from .live_cmds import cmd_live_runs

                return cmd_live_runs(args)
            from .history_cmds import cmd_runs

            return cmd_runs(args)
        if args.command == "resume" or (args.command == "retry" and not args.node):
            from .resume_cmds import cmd_resume, cmd_retry_run

            return cmd_resume(args) if args.command == "resume" else cmd_retry_run(args)
        if args.command in ("tail", "attach", "asks", "answer", "cancel", "retry"):
            from . import live_cmds

            return getattr(live_cmds, f"cmd_{args.command}")(args)
        if args.command == "show":
            from .history_cmds import cmd_show

            return cmd_show(args)
        if args.command == "memory":
            from .store_cmds import cmd_memory_query

            return cmd_memory_query(args)
        if args.command == "artifacts":
            from .store_cmds import cmd_artifacts

            return cmd_artifacts(args)
        if args.command == "index":
            from .store_cmds import cmd_index

            return cmd_index(args)
        if args.command == "tui":
            from aethergraph.tui.app import main as tui_main

            return tui_main(args)
        if args.command == "graph":
            from .graph_cmd import cmd_graph

            return cmd_graph(args)
        if args.command == "jobs":
            from .jobs_cmds import cmd_jobs

            return cmd_jobs(args)
        if args.command == "web":
            from .web_cmd import cmd_web

            return cmd_web(args)
        if args.command == "check":
            from .store_cmds import cmd_check

            return cmd_check(args)
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
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
