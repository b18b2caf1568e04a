"""Streams, images and files in the messages panel.

``StreamTexts`` folds a run's ``stream_delta`` events into the text each open stream has said so
far (a delta replaces the text from its offset on, so a resumed stream that corrects itself
shows right); the stream's end message (``message_sent`` of kind ``stream``) closes it, and from
then on it is an ordinary message. ``StreamPanel`` shows the open streams growing, the last
lines of each. ``message_text`` renders any message for the panel: an image or a file says its
name, type and size and how to get it out (``ag artifacts export``); the terminal shows no
pixels.

Everything here is from a run's log: untrusted text, rendered as text (no markup).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from aethergraph.runtime import events as ev

from ..format import clock, one_line, visible


def _size(n: Any) -> str:
    try:
        n = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"


class StreamTexts:
    """The open streams of one run: stream id -> (node, text so far)."""

    MAX_OPEN = 8  # a run with more open streams shows the most recently grown ones
    MAX_CHARS = 20_000  # a stream's text kept for display (its tail)

    def __init__(self) -> None:
        self.open: dict[str, tuple[str, str]] = {}
        self.version = 0

    def apply(self, e: ev.Event) -> bool:
        """Fold ``e`` in; True when what the panel shows changed."""
        t = type(e)
        if t is ev.StreamDelta:
            node, text = self.open.pop(e.stream_id, (e.node, ""))
            offset = max(0, min(int(e.offset), len(text)))
            text = (text[:offset] + e.text)[-self.MAX_CHARS:]
            self.open[e.stream_id] = (node, text)  # most recently grown last
            while len(self.open) > self.MAX_OPEN:
                self.open.pop(next(iter(self.open)))
            self.version += 1
            return True
        if t is ev.MessageSent and e.kind == "stream" and isinstance(e.data, dict):
            if self.open.pop(str(e.data.get("stream", "")), None) is not None:
                self.version += 1
                return True
        return False

    def live(self) -> list[tuple[str, str, str]]:
        """(stream id, node, text) of the open streams, oldest first."""
        return [(sid, node, text) for sid, (node, text) in self.open.items()]


def message_text(e: ev.MessageSent) -> Text:
    """One message as the panel shows it."""
    line = Text()
    line.append(clock(e.ts), style="dim")
    line.append(" ")
    data = e.data if isinstance(e.data, dict) else {}
    if e.kind == "image" and data.get("ref"):
        line.append("🖼 ", style="bold")
        if data.get("caption"):
            line.append(one_line(data["caption"]) + " · ")
        dims = ""
        if data.get("width") and data.get("height"):
            dims = f"{data['width']}×{data['height']}, "
        line.append(one_line(f"{data.get('name', '')} ({dims}{_size(data.get('size'))}, {data.get('mime', '')})"))
        line.append(one_line(f"  ag artifacts export {data['ref']}"), style="dim")
        return line
    if e.kind == "file" and data.get("ref"):
        line.append("📎 ", style="bold")
        line.append(one_line(f"{data.get('name', '')} ({_size(data.get('size'))}, {data.get('mime', '')})"))
        line.append(one_line(f"  ag artifacts export {data['ref']}"), style="dim")
        return line
    line.append(visible(e.text))  # wrapped, so its own newlines may stay
    return line


class StreamPanel(Static):
    """The open streams of the run on display, growing as their deltas arrive."""

    DEFAULT_CSS = """
    StreamPanel { height: auto; max-height: 12; }
    """
    LINES_PER_STREAM = 4

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", markup=False, **kwargs)
        self._shown = -1

    def reset(self) -> None:
        """Another run on display: nothing shown until its streams are."""
        self._shown = -1
        self.update("")
        self.display = False

    def show(self, streams: StreamTexts) -> None:
        if streams.version == self._shown:
            return
        self._shown = streams.version
        out = Text()
        for _, node, text in streams.live():
            if out:
                out.append("\n")
            out.append("▸ ", style="bold cyan")
            out.append(one_line(node.rsplit("/", 1)[-1] or "run") + " ", style="cyan")
            tail = text.splitlines()[-self.LINES_PER_STREAM:] if text else [""]
            out.append("\n  ".join(one_line(t) for t in tail))  # the run's text: shown, not obeyed
            out.append("▌", style="blink")
        self.update(out)
        self.display = bool(streams.open)
