"""The dashboard's command line, written once for both ways in: ``ag tui`` (a subcommand of
the ``ag`` parser, which builds it from ``add_arguments``) and ``python -m aethergraph.tui``
(``parse``, handy when the console script is not on PATH).

Argparse only, nothing of the dashboard: ``ag --help`` builds every subcommand's parser, and
must not pay for Textual to do it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

HELP = "the terminal dashboard: live runs, asks, memory, artifacts"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", metavar="TARGET", default=None,
                   help="also run a graph in this process, with the dashboard as its channel "
                        "(path/to/file.py:fn or pkg.module:fn)")
    p.add_argument("--input", "-i", metavar="JSON", default=None, help="inputs for --run, as a JSON object")
    p.add_argument("--home", help="store directory (default: $AETHERGRAPH_HOME or ./.aethergraph)")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``python -m aethergraph.tui ARGS``: the same arguments as ``ag tui``."""
    parser = argparse.ArgumentParser(prog="ag tui", description=f"AetherGraph: {HELP}.")
    add_arguments(parser)
    return parser.parse_args(list(argv) if argv is not None else None)
