"""How facts read on screen: times, durations, states, one line per event.

Kept apart from the widgets so every screen (and the tests) say a thing the same way. Every
state is spelled out in words as well as coloured, because NO_COLOR terminals and people who
cannot tell red from green must read the same table.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from rich.text import Text

from aethergraph.runtime import events as ev
from aethergraph.runtime.textsafe import one_line, visible

__all__ = ["one_line", "visible"]

# Colours are the bright entries of the 16-colour palette, written as RGB: a terminal with true
# colour shows them as they are, and one with 16 (TERM=screen) gets exactly that entry back
# (bright red stays red; a theme's "red" could come back magenta). The order of severity is the
# order of loudness: FAILED red and bold > TIMED OUT red > INTERRUPTED yellow and bold >
# CANCELLED yellow > RUNNING cyan > SUCCEEDED green.
RED, YELLOW, CYAN, GREEN = "#ff5555", "#ffff55", "#55ffff", "#55ff55"
STATUS_COLOR_STYLE = {
    ev.FAILED: f"bold {RED}",
    ev.TIMED_OUT: RED,
    ev.INTERRUPTED: f"bold {YELLOW}",
    ev.CANCELLED: YELLOW,
    ev.RUNNING: f"bold {CYAN}",
    ev.SUCCEEDED: GREEN,
}
# NO_COLOR: every colour turns grey, so weight alone says it, in the same order: a failure is a
# reversed block, an interruption bold and underlined, a cancellation underlined.
STATUS_MONO_STYLE = {
    ev.FAILED: "bold reverse",
    ev.TIMED_OUT: "reverse",
    ev.INTERRUPTED: "bold underline",
    ev.CANCELLED: "underline",
    ev.RUNNING: "bold",
    ev.SUCCEEDED: "",
}
STATUS_STYLE = dict(STATUS_COLOR_STYLE)  # what is in force (use_no_color switches it)

LEVEL_COLOR_STYLE = {"debug": "dim", "info": "", "warning": YELLOW, "error": f"bold {RED}",
                     "critical": f"bold {RED} reverse"}
LEVEL_MONO_STYLE = {"debug": "dim", "info": "", "warning": "underline", "error": "bold reverse",
                    "critical": "bold reverse"}
LEVEL_STYLE = dict(LEVEL_COLOR_STYLE)


def use_no_color(no_color: bool) -> None:
    """Switch every state and level style to weight alone (NO_COLOR) or back to colour. The
    app calls it once it knows (Textual reads NO_COLOR when the app is made)."""
    STATUS_STYLE.clear()
    STATUS_STYLE.update(STATUS_MONO_STYLE if no_color else STATUS_COLOR_STYLE)
    LEVEL_STYLE.clear()
    LEVEL_STYLE.update(LEVEL_MONO_STYLE if no_color else LEVEL_COLOR_STYLE)


def bad_style() -> str:
    """The style of a failure named in a line (a timeline row, the header's error)."""
    return STATUS_STYLE[ev.FAILED]


NODE_MARK = {
    ev.RUNNING: "▶",
    ev.SUCCEEDED: "✓",
    ev.FAILED: "✗",
    ev.CANCELLED: "⊘",
    ev.TIMED_OUT: "⌛",
}

LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red", "critical": "bold red reverse"}


def status_text(status: str) -> Text:
    return Text(one_line(status.upper()), style=STATUS_STYLE.get(status, ""))


def plain(value: object) -> Text:
    """Run-derived text for a one-line place (a table cell): controls shown, never markup.

    A ``str`` given to a DataTable cell or a Tree label is parsed as markup; a ``Text`` is not."""
    return Text(one_line(value if isinstance(value, str) else str(value)))


def when(ts: float | None) -> str:
    """Local date and time, to the second (like ``ag runs``)."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def short_when(ts: float | None, now: float | None = None) -> str:
    """``HH:MM:SS`` today, ``MM-DD HH:MM`` before: eleven columns at most, for 80-column tables."""
    if ts is None:
        return "-"
    now = time.time() if now is None else now
    lt = time.localtime(ts)
    if time.localtime(now)[:3] == lt[:3]:
        return time.strftime("%H:%M:%S", lt)
    return time.strftime("%m-%d %H:%M", lt)


def ago(ts: float | None, now: float | None = None) -> str:
    """How long ago, in the fewest characters: ``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``."""
    if ts is None:
        return "-"
    now = time.time() if now is None else now
    s = max(0.0, now - ts)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if s >= size:
            return f"{int(s // size)}{unit} ago"
    return f"{int(s)}s ago"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def dur(seconds: float | None) -> str:
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
    text = value if isinstance(value, str) else msgspec.json.encode(value, enc_hook=repr).decode()
    text = one_line(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, width: int) -> str:
    """At most ``width`` characters, controls shown (every caller shows run-derived text)."""
    text = one_line(text)
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def tag(event: ev.Event) -> str:
    return type(event).__struct_config__.tag


def event_detail(e: ev.Event) -> str:
    """What an event says, in one line (the node and time are shown beside it), with the
    run's control characters shown rather than obeyed."""
    return one_line(_event_detail(e))


def _event_detail(e: ev.Event) -> str:
    t = type(e)
    if t is ev.RunStarted:
        return f"{e.graph} inputs={short(e.inputs, 60)}"
    if t is ev.RunResumed:
        return f"attempt {e.attempt} (pid {e.pid}, {e.replayable_steps} replayable steps)"
    if t is ev.RunFinished:
        return e.status.upper() + (f" {e.error}" if e.error else "")
    if t is ev.NodeStarted:
        return f"{e.kind} {e.name}" + (f" {short(e.inputs, 50)}" if e.inputs else "")
    if t is ev.NodeFinished:
        return f"ok in {e.duration_s:.2f}s → {short(e.outputs, 50)}"
    if t is ev.NodeFailed:
        return str(e.error)
    if t is ev.NodeCancelled:
        return e.reason + (f" (by {e.by})" if e.by else "")
    if t is ev.NodeTimedOut:
        return f"timed out after {e.timeout_s:g}s (attempt {e.attempt})"
    if t is ev.AttemptRetried:
        why = str(e.error) if e.error else (
            f"asked by {e.requested_by}" if e.requested_by else "timed out")
        return f"attempt {e.attempt} → {e.attempt + 1} in {e.delay_s:.2f}s ({why})"
    if t is ev.MemoryRecorded:
        return f"{e.kind} {short(e.data, 50)}" + (f" #{' #'.join(e.tags)}" if e.tags else "")
    if t is ev.ArtifactWritten:
        return f"{e.name} ({e.size} B)"
    if t is ev.ArtifactPinned:
        return f"{'pinned' if e.pinned else 'unpinned'} {e.ref}"
    if t is ev.AskOpened:
        return f"{e.ask_id} [{e.ask_kind}] {e.prompt}" + (f" {e.options}" if e.options else "")
    if t is ev.AskAnswered:
        return f"{e.ask_id} = {e.answer!r} (by {e.by})"
    if t is ev.AskExpired:
        return f"{e.ask_id} closed: {e.reason}"
    if t is ev.MessageSent:
        return e.text
    if t is ev.Log:
        return f"{e.level}: {e.message}"
    if t is ev.Progress:
        total = f"/{e.total:g}" if e.total is not None else ""
        return f"{e.title} {e.state} {e.current:g}{total} {e.subtitle}".rstrip()
    if t is ev.GraphPlanned:
        return f"{len(e.nodes)} nodes: " + ", ".join(n.id for n in e.nodes[:20]) + (" …" if len(e.nodes) > 20 else "")
    return ""


# Short names for the timeline: at 80 columns every character of the type column is one less
# for what the event says.
TIMELINE_LABEL = {
    "run_started": "run start", "run_resumed": "resumed", "run_finished": "run end",
    "node_started": "start", "node_finished": "done", "node_failed": "FAILED",
    "node_cancelled": "cancelled", "node_timed_out": "TIMED OUT", "attempt_retried": "retry",
    "memory_recorded": "memory", "artifact_written": "artifact", "artifact_pinned": "pinned",
    "ask_opened": "ASK", "ask_answered": "answered", "ask_expired": "ask closed",
    "message_sent": "message", "log": "log", "progress": "progress", "graph_planned": "planned",
}


def event_line(e: ev.Event, t0: float | None = None) -> Text:
    """A timeline row: time, what happened, to which child node, and what it says.

    The run's own node (the graph) is not named on every row; a child node is, by its last
    path segment.
    """
    stamp = f"{'+' + format(e.ts - t0, '.2f') + 's':>8}" if t0 else clock(e.ts)
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(stamp, style="dim")
    line.append(" ")
    kind = tag(e)
    style = ""
    if kind in ("node_failed", "node_timed_out") or (kind == "run_finished" and e.status != ev.SUCCEEDED):
        style = bad_style()
    elif kind == "ask_opened":
        style = "bold"
    elif kind in ("run_started", "run_finished", "run_resumed"):
        style = "bold"
    line.append(f"{TIMELINE_LABEL.get(kind, kind):<10}", style=style)
    if "/" in e.node:
        line.append(one_line(e.node.rsplit("/", 1)[-1]), style="cyan")
        line.append(" ")
    line.append(event_detail(e))
    return line


def _num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.3g}"


def progress_line(e: ev.Progress, first: tuple[float, float] | None, width: int) -> Text:
    """One progress bar in ``width`` cells: title, bar, count, percent, rate and ETA.

    The numbers are what a person reads, so they are laid out first and never cut; the bar
    takes what is left up to a quarter, and the title the rest (cut with an ellipsis, or left
    out when nothing is left). ``first`` is (ts, current) of the first update seen for this
    bar: the rate is measured between the run's own timestamps, not the dashboard's clock."""
    done = e.state == "end"
    total = e.total
    current = total if done and total is not None else e.current
    numbers = [f"{_num(current)}/{_num(total)}" if total is not None else _num(current)]
    if total:
        numbers.append(f"{min(100, int(100 * current / total))}%")
    rate = None
    if first is not None and e.ts > first[0] and current > first[1]:
        rate = (current - first[1]) / (e.ts - first[0])
        numbers.append(f"{rate:,.3g}/s")
    if done:
        numbers.append("done")
    elif rate and total is not None and total > current:
        numbers.append(f"ETA {dur((total - current) / rate)}")
    right = " ".join(numbers)
    room = max(0, width - len(right) - 1)
    bar_w = min(30, room // 3) if total else 0
    title = one_line(e.title or e.progress_id) + (f" · {one_line(e.subtitle)}" if e.subtitle else "")
    title_w = room - bar_w - (1 if bar_w else 0)
    line = Text(no_wrap=True, overflow="crop")
    if title_w > 0:
        line.append(clip(title, title_w).ljust(title_w), style="bold" if not done else "dim")
        line.append(" ")
    if bar_w:
        filled = int(round(bar_w * min(1.0, current / total)))
        line.append("█" * filled, style=GREEN if done else CYAN)
        line.append("░" * (bar_w - filled), style="dim")
        line.append(" ")
    line.append(right)
    return line


def _block(value: Any) -> str:
    """A value as indented JSON for reading, its strings' control characters shown."""
    import json

    def safe(v: Any) -> Any:
        if isinstance(v, str):
            return visible(v)
        if isinstance(v, dict):
            return {visible(str(k)): safe(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [safe(x) for x in v]
        return v

    try:
        return json.dumps(safe(msgspec.to_builtins(value)), indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return visible(repr(value))


def node_detail(path: str, model: Any) -> Text:
    """What the Node tab says about the node at ``path`` ("" for the run itself): its state,
    timing, inputs, outputs, and for a failure the error and its traceback. For the run: its
    inputs, outputs, error, and every failed node's error, so "why did it fail" is one key."""
    s = model.summary
    out = Text()

    def head(label: str) -> None:
        out.append(f"\n{label}\n", style="bold")

    if not path:
        out.append("run ", style="bold")
        out.append(one_line(s.graph))
        out.append("  ")
        out.append_text(status_text(model.status))
        if s.error:
            head("error")
            out.append(visible(s.error) + "\n", style=bad_style())
        head("inputs")
        out.append(_block(s.inputs) + "\n")
        if s.outputs is not None:
            head("outputs")
            out.append(_block(s.outputs) + "\n")
        failed = [p for p, n in s.nodes.items() if n.state in (ev.FAILED, ev.TIMED_OUT)]
        if failed:
            head(f"failed nodes ({len(failed)}; pick one in the tree for its inputs and traceback)")
            for p in failed[:20]:
                out.append(f"✗ {one_line(p)}: ", style=bad_style())
                out.append(visible(s.nodes[p].error) + "\n")
        return out
    n = s.nodes.get(path)
    if n is None:
        return Text(f"node {one_line(path)}: not in this run's log")
    start, end = model.node_events.get(path, (None, None))
    out.append(f"{one_line(n.kind)} ", style="dim")
    out.append(one_line(n.name), style="bold")
    out.append("  ")
    out.append_text(status_text(n.state))
    if n.attempts > 1:
        out.append(f"  attempt {n.attempts}")
    out.append(f"\n{one_line(path)}\n", style="dim")
    took = (n.ended - n.started) if n.ended is not None else None
    out.append(f"started {clock(n.started)}" + (f" · took {dur(took)}" if took is not None else "") + "\n")
    if n.error:
        head("error")
        out.append(visible(n.error) + "\n", style=bad_style())
    error = getattr(end, "error", None)
    if error is not None and error.traceback:
        head("traceback")
        out.append(visible(error.traceback.rstrip()) + "\n")
    if start is not None:
        head("inputs")
        out.append(_block(start.inputs) + "\n")
    if end is not None and getattr(end, "outputs", None) is not None:
        head("outputs")
        out.append(_block(end.outputs) + "\n")
    return out
