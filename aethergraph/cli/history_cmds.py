"""``ag runs`` and ``ag show RUN``: what the store knows about past and running runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from aethergraph.runtime import events as ev
from aethergraph.runtime.describe import describe, dur, tag, when
from aethergraph.runtime.errors import UnknownRun
from aethergraph.runtime.exits import EXIT_OK
from aethergraph.runtime.history import effective_status, summarize
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events
from aethergraph.runtime.textsafe import one_line

from ..detach import output_path
from .main import CliError


def _layout(home: str | None) -> StoreLayout:
    layout = StoreLayout.at(home)
    if not layout.exists():
        raise CliError(f"no store at {layout.home} (run something first, or pass --home)")
    return layout


def table(rows: list[list[str]], header: list[str]) -> str:
    """Aligned columns. Every cell is shown with its control characters visible: cells hold what
    runs wrote (graph and node names, prompts, messages, errors), never terminal commands."""
    rows = [[one_line(str(c)) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def cmd_runs(args: Any) -> int:
    layout = _layout(args.home)
    index = Index(layout)
    try:
        index.catch_up()
        runs = index.runs(limit=args.limit)
    finally:
        index.close()
    now = time.time()
    for r in runs:
        r.status = effective_status(r.status, r.host, r.run_id, layout)
    rows = [{**msgspec.to_builtins(r), "duration_s": r.duration(now)} for r in runs] if args.json else runs
    if said_all(args, rows, "no runs yet"):
        return EXIT_OK
    print_runs((r.run_id, r.graph, r.status, r.started, r.duration(now), r.pending_asks) for r in runs)
    return EXIT_OK


def said_all(args: Any, rows: Any, empty: str) -> bool:
    """``--json``: the rows as one JSON array; no rows: the line ``empty``. True when that
    said everything (a list command then exits 0), False when the table is still to print."""
    if args.json:
        print(msgspec.json.encode(rows).decode())
        return True
    if not rows:
        print(empty)
        return True
    return False


def print_runs(runs: Iterable[tuple[str, str, str, float | None, float | None, int | None]]) -> None:
    """The runs table of ``ag runs`` and ``ag runs --live``: (run id, graph, status, started,
    duration in seconds, pending asks) per run."""
    rows = [[run_id, graph, status.upper(), when(started), dur(duration), str(asks or "")]
            for run_id, graph, status, started, duration, asks in runs]
    print(table(rows, ["RUN", "GRAPH", "STATUS", "STARTED", "DURATION", "ASKS"]))


def _process_line(layout: Any, summary: Any) -> str:
    """Which process runs (or last ran) the run, and where what it printed went when detached."""
    where = f"pid {summary.pid} on {summary.host}"
    if summary.status == "running":  # read with the store: its owner lock is held, or another host's
        where += " (running)"
    else:
        where += " (ended)" if summary.status != "interrupted" else " (gone: `ag resume` continues it)"
    out = output_path(layout, summary.run_id)
    return where + (f"  output {out}" if out.is_file() else "")


def cmd_show(args: Any) -> int:
    layout = _layout(args.home)
    try:
        layout.run_log(args.run_id)
    except UnknownRun:
        raise CliError(f"unknown run id: {args.run_id} (run ids look like 20261125-214400-3fa9c1, "
                       "or nightly-2026-12-01 when chosen with --run-id)") from None
    try:
        path = layout.existing_run_log(args.run_id)
    except UnknownRun:
        raise CliError(f"unknown run id: {args.run_id}") from None
    bad: list = []
    events = read_events(path, bad_lines=bad, warn=False)
    summary = summarize(args.run_id, events, layout)
    if args.json:
        out = {"run": summary.to_dict(), "events": [msgspec.to_builtins(e) for e in events],
               "bad_lines": [str(b) for b in bad]}
        print(msgspec.json.encode(out).decode())
        return EXIT_OK
    print(one_line(f"run {summary.run_id}  {summary.graph}  {summary.status.upper()}  {dur(summary.duration_s)}"))
    print(one_line(f"started {when(summary.started)}  pid {summary.pid} on {summary.host}"))
    print(one_line(f"process {_process_line(layout, summary)}"))
    if summary.entrypoint:
        print(one_line(f"entrypoint {summary.entrypoint}"))
    if summary.error:
        print(one_line(f"error {summary.error}"))
    print()
    t0 = summary.started or (events[0].ts if events else 0.0)
    rows = [[f"+{e.ts - t0:.3f}s", tag(e), e.node or "-", describe(e)] for e in events]
    print(table(rows, ["TIME", "EVENT", "NODE", "DETAIL"]))
    if getattr(args, "trace", False):
        _print_traces(events)
    for b in bad:
        print(f"warning: {b}", file=sys.stderr)
    return EXIT_OK


# Control characters other than newline and tab, mapped to nothing; plus DEL and C1.
CONTROL = {c: None for c in [*range(0, 9), *range(11, 32), 127, *range(128, 160)]}


def _print_traces(events: list) -> None:
    """The tracebacks the log stored: each failed node's, then the run's (once each; a
    parent's failure often carries its child's traceback inside its own)."""
    seen: set[str] = set()
    for e in events:
        info = getattr(e, "error", None)
        tb = getattr(info, "traceback", "") if info is not None else ""
        if not tb or tb in seen:
            continue
        seen.add(tb)
        where = f"run {e.run_id}" if type(e) is ev.RunFinished else f"node {e.node}"
        head = f"--- traceback of {where} ({info})"
        print("\n" + head.translate(CONTROL))
        print(tb.rstrip().translate(CONTROL))  # run text: no terminal escapes get through
    if not seen:
        print("\n(no traceback stored: nothing failed with an exception)")
