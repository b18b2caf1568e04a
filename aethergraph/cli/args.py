"""The ``ag`` command's arguments: argparse alone, so ``ag --help`` reads no command's code.

Every subcommand's arguments are here; the commands themselves (``*_cmd(s).py``) are imported
only when one runs (see ``main``).
"""

from __future__ import annotations

import argparse

DEFAULT_WEB_PORT = 8740

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


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None


def _count(text: str) -> int:
    """A --limit: a whole number of at least 1 (0 or less would silently mean "everything")."""
    n = _whole(text, "whole number")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _port(text: str) -> int:
    n = _whole(text, "port number")
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {n}")
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

    # The dashboard's arguments are written once, in its own floor; the CLI may reach up a floor
    # for the `tui` subcommand only, and only here (argparse, nothing of Textual).
    from aethergraph.tui import args as tui_args

    tui_args.add_arguments(sub.add_parser("tui", help=tui_args.HELP))

    p = sub.add_parser(
        "graph", help="print a @graphify graph's nodes, ids and edges without running it",
        description="Build a @graphify graph without running it and print its DAG: one line per "
        "node (id, the tool it calls, the ids it waits for; '(after)' marks ordering without data).",
    )
    p.add_argument("target", help="path/to/file.py:graph or package.module:graph")
    p.add_argument("--json", action="store_true", help="nodes and edges as one JSON object")

    p = sub.add_parser("jobs", help="process jobs: list, logs, cancel")
    p.add_argument("--run", default=None, help="only jobs of this run")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    _add_home(p)
    jsub = p.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")
    q = jsub.add_parser("logs", help="a job's output")
    q.add_argument("job_id")
    q.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    q.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    q.add_argument("--tail", "-n", type=int, default=None, help="only the last N lines")
    _add_home(q)
    q = jsub.add_parser("cancel", help="cancel a job (its whole process group)")
    q.add_argument("job_id")
    q.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                   help="between SIGTERM and SIGKILL (default: the job's own grace_s)")
    _add_home(q)

    p = sub.add_parser("web", help="the dashboard in a browser: token-protected, loopback by default")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=DEFAULT_WEB_PORT,
                   help=f"port (default {DEFAULT_WEB_PORT}; 0: any free one)")
    _add_home(p)

    p = sub.add_parser("check", help="verify the logs against the index; report, never fix")
    p.add_argument("--verify-blobs", action="store_true", help="also re-hash every artifact blob")
    _add_home(p)
    return parser
