"""``ag runs`` and ``ag show RUN``: what the store knows about past and running runs."""

from __future__ import annotations

import sys
import time
from typing import Any

import msgspec

from .main import EXIT_OK, CliError


def _layout(home: str | None):
    from aethergraph.runtime.store.layout import StoreLayout

    layout = StoreLayout.at(home)
    if not layout.exists():
        raise CliError(f"no store at {layout.home} (run something first, or pass --home)")
    return layout


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Aligned columns. Every cell is shown with its control characters visible: cells hold what
    runs wrote (graph and node names, prompts, messages, errors), never terminal commands."""
    from aethergraph.runtime.textsafe import one_line

    rows = [[one_line(str(c)) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def cmd_runs(args: Any) -> int:
    from aethergraph.runtime.history import effective_status
    from aethergraph.runtime.store.index import Index

    layout = _layout(args.home)
    index = Index(layout)
    try:
        index.catch_up()
        runs = index.runs(limit=args.limit)
    finally:
        index.close()
    now = time.time()
    for r in runs:
        r.status = effective_status(r.status, r.pid, r.host, r.run_id, layout)
    if args.json:
        print(msgspec.json.encode([{**msgspec.to_builtins(r), "duration_s": r.duration(now)} for r in runs]).decode())
        return EXIT_OK
    if not runs:
        print("no runs yet")
        return EXIT_OK
    rows = [
        [r.run_id, r.graph, r.status.upper(), _when(r.started), _dur(r.duration(now)), str(r.pending_asks or "")]
        for r in runs
    ]
    print(table(rows, ["RUN", "GRAPH", "STATUS", "STARTED", "DURATION", "ASKS"]))
    return EXIT_OK


def _event_line(e: Any) -> str:
    from aethergraph.runtime import events as ev

    t = type(e)
    if t is ev.RunStarted:
        return f"inputs={_short(e.inputs)}"
    if t is ev.RunFinished:
        return e.status.upper() + (f"  {e.error}" if e.error else "")
    if t is ev.NodeStarted:
        return f"{e.kind} {e.name} inputs={_short(e.inputs)}"
    if t is ev.NodeFinished:
        return f"outputs={_short(e.outputs)} ({e.duration_s:.3f}s)"
    if t is ev.NodeFailed:
        return str(e.error)
    if t is ev.NodeCancelled:
        return f"{e.reason}" + (f" (by {e.by})" if e.by else "")
    if t is ev.NodeTimedOut:
        return f"timed out after {e.timeout_s:g}s (attempt {e.attempt})"
    if t is ev.AttemptRetried:
        why = str(e.error) if e.error else (
            f"requested by {e.requested_by}" if e.requested_by else "timed out")
        return f"attempt {e.attempt} -> {e.attempt + 1} after {e.delay_s:.2f}s ({why})"
    if t is ev.MemoryRecorded:
        return f"{e.kind} {_short(e.data)}" + (f" tags={e.tags}" if e.tags else "")
    if t is ev.ArtifactWritten:
        return f"{e.name} ({e.size} bytes) {e.ref}"
    if t is ev.AskOpened:
        return f"{e.ask_id} [{e.ask_kind}] {e.prompt}" + (f" options={e.options}" if e.options else "")
    if t is ev.AskAnswered:
        return f"{e.ask_id} = {e.answer!r} (by {e.by})"
    if t is ev.AskExpired:
        return f"{e.ask_id} expired"
    if t is ev.MessageSent:
        return e.text
    if t is ev.Log:
        return f"{e.level} {e.message}"
    if t is ev.Progress:
        total = f"/{e.total:g}" if e.total is not None else ""
        return f"{e.title} {e.state} {e.current:g}{total} {e.subtitle}".rstrip()
    if t is ev.GraphPlanned:
        ids = ", ".join(n.id for n in e.nodes)
        return f"{len(e.nodes)} nodes: " + (ids if len(ids) <= 200 else ids[:199] + "…")
    if t is ev.JobSubmitted:
        return f"{e.job_id} {_short(e.name or ' '.join(e.argv))}"
    if t is ev.JobStateChanged:
        extra = "" if e.exit_code is None else f" exit {e.exit_code}"
        return f"{e.job_id} {e.state}{extra}" + (f" ({e.note})" if e.note else "") + (
            f" {_short(e.error.splitlines()[0])}" if e.error else "")
    return ""


def _short(value: Any, limit: int = 100) -> str:
    text = msgspec.json.encode(value, enc_hook=repr).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _process_line(layout: Any, summary: Any) -> str:
    """Which process runs (or last ran) the run, and where what it printed went when detached."""
    from aethergraph.runtime.history import HOST, pid_alive

    from ..detach import output_path

    where = f"pid {summary.pid} on {summary.host}"
    if summary.status == "running":
        where += " (running)" if summary.host != HOST or pid_alive(summary.pid) else ""
    else:
        where += " (ended)" if summary.status != "interrupted" else " (gone: `ag resume` continues it)"
    out = output_path(layout, summary.run_id)
    return where + (f"  output {out}" if out.is_file() else "")


def cmd_show(args: Any) -> int:
    from aethergraph.runtime.errors import UnknownRun
    from aethergraph.runtime.history import summarize
    from aethergraph.runtime.store.logfile import read_events

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
    from aethergraph.runtime.textsafe import one_line

    print(one_line(f"run {summary.run_id}  {summary.graph}  {summary.status.upper()}  {_dur(summary.duration_s)}"))
    print(one_line(f"started {_when(summary.started)}  pid {summary.pid} on {summary.host}"))
    print(one_line(f"process {_process_line(layout, summary)}"))
    if summary.entrypoint:
        print(one_line(f"entrypoint {summary.entrypoint}"))
    if summary.error:
        print(one_line(f"error {summary.error}"))
    print()
    t0 = summary.started or (events[0].ts if events else 0.0)
    rows = [[f"+{e.ts - t0:.3f}s", type(e).__struct_config__.tag, e.node or "-", _event_line(e)] for e in events]
    print(table(rows, ["TIME", "EVENT", "NODE", "DETAIL"]))
    if getattr(args, "trace", False):
        _print_traces(events)
    for b in bad:
        print(f"warning: {b}", file=sys.stderr)
    return EXIT_OK


# Control characters other than newline and tab, mapped to nothing; plus DEL and C1.
_CONTROL = {c: None for c in [*range(0, 9), *range(11, 32), 127, *range(128, 160)]}


def _print_traces(events: list) -> None:
    """The tracebacks the log stored: each failed node's, then the run's (once each; a
    parent's failure often carries its child's traceback inside its own)."""
    from aethergraph.runtime import events as ev

    seen: set[str] = set()
    for e in events:
        info = getattr(e, "error", None)
        tb = getattr(info, "traceback", "") if info is not None else ""
        if not tb or tb in seen:
            continue
        seen.add(tb)
        where = f"run {e.run_id}" if type(e) is ev.RunFinished else f"node {e.node}"
        head = f"--- traceback of {where} ({info})"
        print("\n" + head.translate(_CONTROL))
        print(tb.rstrip().translate(_CONTROL))  # run text: no terminal escapes get through
    if not seen:
        print("\n(no traceback stored: nothing failed with an exception)")
