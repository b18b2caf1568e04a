"""What an event says, as one line of plain text; and how times and durations read.

Beside the events because every reader of the log describes them: ``ag show`` and ``ag tail``
print this text as it is, the dashboard styles it (tui/format.py). One describer per event kind,
kept in one table, so a kind added to the union is described once for both (a test walks the
union and fails on a kind missing here).

Every text comes from a run, so it is untrusted: ``describe`` shows its control characters
rather than obeying them (``textsafe.one_line``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from aethergraph.runtime import events as ev
from aethergraph.runtime.textsafe import one_line

__all__ = ["describe", "dur", "short", "tag", "when"]


def when(ts: float | None) -> str:
    """Local date and time, to the second; ``-`` when there is none."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def dur(seconds: float | None) -> str:
    """A duration in at most six characters: ``4.2s``, ``3m07s``, ``2h05m``, ``3d04h``."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def short(value: Any, limit: int = 80) -> str:
    """A value in at most ``limit`` characters on one line: a string as it is, anything else
    as JSON (objects msgspec cannot encode by their repr), whitespace runs folded."""
    text = value if isinstance(value, str) else msgspec.json.encode(value, enc_hook=repr).decode()
    text = one_line(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tag(event: ev.Event) -> str:
    """The event's kind, as the log spells it (``node_failed``)."""
    return type(event).__struct_config__.tag


def describe(event: ev.Event) -> str:
    """What ``event`` says, in one line (its time, kind and node are shown beside it); no
    trailing blanks, which a table's last column would drop anyway."""
    return one_line(_DESCRIBERS[type(event)](event)).rstrip()


def _error(info: ev.ErrorInfo) -> str:
    return str(info)


def _retried(e: ev.AttemptRetried) -> str:
    why = _error(e.error) if e.error else (f"asked by {e.requested_by}" if e.requested_by else "timed out")
    return f"attempt {e.attempt} → {e.attempt + 1} in {e.delay_s:.2f}s ({why})"


def _progress(e: ev.Progress) -> str:
    total = f"/{e.total:g}" if e.total is not None else ""
    return f"{e.title} {e.state} {e.current:g}{total} {e.subtitle}".rstrip()


def _planned(e: ev.GraphPlanned) -> str:
    more = " …" if len(e.nodes) > 20 else ""
    return f"{len(e.nodes)} nodes: " + ", ".join(n.id for n in e.nodes[:20]) + more


def _job_state(e: ev.JobStateChanged) -> str:
    text = f"{e.job_id} {e.state}"
    if e.exit_code is not None:
        text += f" exit {e.exit_code}"
    if e.note:
        text += f" ({e.note})"
    if e.error:
        text += " " + short(e.error.splitlines()[0], 100)
    return text


def _suffix(label: str, value: Any) -> str:
    """`` label value`` when there is a value, nothing otherwise."""
    return f"{label}{value}" if value else ""


# Every kind of the union, and what it says. A lambda where one f-string says it all.
_DESCRIBERS: dict[type, Callable[[Any], str]] = {
    ev.RunStarted: lambda e: f"{e.graph} inputs={short(e.inputs, 60)}",
    ev.RunResumed: lambda e: f"attempt {e.attempt} (pid {e.pid}, {e.replayable_steps} replayable steps)",
    ev.RunFinished: lambda e: e.status.upper() + (f" {_error(e.error)}" if e.error else ""),
    ev.NodeStarted: lambda e: f"{e.kind} {e.name}" + (f" {short(e.inputs, 50)}" if e.inputs else ""),
    ev.NodeFinished: lambda e: f"ok in {e.duration_s:.2f}s → {short(e.outputs, 50)}",
    ev.NodeFailed: lambda e: _error(e.error),
    ev.NodeCancelled: lambda e: e.reason + (f" (by {e.by})" if e.by else ""),
    ev.NodeTimedOut: lambda e: f"timed out after {e.timeout_s:g}s (attempt {e.attempt})",
    ev.AttemptRetried: _retried,
    ev.MemoryRecorded: lambda e: f"{e.kind} {short(e.data, 50)}" + _suffix(" #", " #".join(e.tags)),
    ev.ArtifactWritten: lambda e: f"{e.name} ({e.size} B)",
    ev.ArtifactPinned: lambda e: f"{'pinned' if e.pinned else 'unpinned'} {e.ref}",
    ev.AskOpened: lambda e: f"{e.ask_id} [{e.ask_kind}] {e.prompt}" + _suffix(" ", e.options),
    ev.AskAnswered: lambda e: f"{e.ask_id} = {e.answer!r} (by {e.by})",
    ev.AskExpired: lambda e: f"{e.ask_id} closed: {e.reason}",
    ev.MessageSent: lambda e: e.text,
    ev.StreamDelta: lambda e: f"{e.stream_id} at {e.offset}: {short(e.text, 60)}",
    ev.Log: lambda e: f"{e.level}: {e.message}",
    ev.Progress: _progress,
    ev.JobSubmitted: lambda e: f"{e.job_id} {short(e.name or ' '.join(e.argv), 100)}",
    ev.JobStateChanged: _job_state,
    ev.GraphPlanned: _planned,
}
