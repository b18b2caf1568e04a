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
    p.add_argument(
        "--answer", "-a", action="append", default=[], metavar="TEXT",
        help="answer the run's asks, in order (repeatable); for scripts and CI",
    )
    p.add_argument("--durability", choices=("strict", "batch", "off"), default=None)
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    _add_home(p)

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--limit", "-n", type=int, default=50)
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    _add_home(p)

    p = sub.add_parser("show", help="one run's timeline")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    _add_home(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "run":
            from .run_cmd import cmd_run

            return cmd_run(args)
        if args.command == "runs":
            from .history_cmds import cmd_runs

            return cmd_runs(args)
        if args.command == "show":
            from .history_cmds import cmd_show

            return cmd_show(args)
    except CliError as exc:
        print(f"ag: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `ag runs | head`
        return EXIT_OK
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
