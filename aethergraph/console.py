"""The console channel: messages printed to stdout, asks answered on stdin.

Printing is an event subscriber: a node only emits ``message_sent`` / ``progress`` events, and
whatever channels are attached (this console; later the dashboard) show them.

Reading stdin is the awkward part. ``readline`` cannot be cancelled, and an ask must be
abandonable the moment another channel answers it. So one daemon thread per process reads lines
into a queue and wakes every trio task waiting for one; a waiter that is cancelled leaves the
line in the queue for the next ask instead of losing it. Asks open at the same time are answered
one at a time, in turn, and the console says which question the next line answers.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any, TextIO

import trio

from aethergraph.runtime import events as ev
from aethergraph.runtime.asks import DEFAULT_MAX_FILE_BYTES, _size_text, decode_files, split_paths, store_paths
from aethergraph.runtime.errors import InvalidAnswer


class StdinLines:
    """Lines of stdin, read by a background thread, awaited from trio."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: deque[str] = deque()
        self._eof = False
        self._lock = threading.Lock()
        # Every task waiting for a line; the pump wakes them all and starts a new list (the
        # setter replaces, as everywhere in the runtime: a second waiter never strands a first).
        self._waiters: list[tuple[Any, trio.Event]] = []
        self._thread: threading.Thread | None = None

    @property
    def stream(self) -> TextIO | None:
        return self._stream if self._stream is not None else sys.stdin

    def isatty(self) -> bool:
        s = self.stream
        try:
            return s is not None and s.isatty()
        except (ValueError, OSError):
            return False

    def exhausted(self) -> bool:
        with self._lock:
            return self._eof and not self._lines

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._pump, name="ag-stdin", daemon=True)
            self._thread.start()

    def _pump(self) -> None:
        stream = self.stream
        while True:
            try:
                line = stream.readline() if stream is not None else ""
            except (ValueError, OSError):
                line = ""
            with self._lock:
                if line == "":
                    self._eof = True
                else:
                    self._lines.append(line.rstrip("\r\n"))
                waiters, self._waiters = self._waiters, []
            for token, event in waiters:
                try:
                    token.run_sync_soon(event.set)
                except trio.RunFinishedError:
                    pass
            if line == "":
                return

    async def readline(self) -> str | None:
        """The next line, or None at end of input."""
        self._ensure_thread()
        while True:
            with self._lock:
                if self._lines:
                    return self._lines.popleft()
                if self._eof:
                    return None
                event = trio.Event()
                self._waiters.append((trio.lowlevel.current_trio_token(), event))
            await event.wait()


_STDIN: StdinLines | None = None


def stdin_lines() -> StdinLines:
    global _STDIN
    if _STDIN is None:
        _STDIN = StdinLines()
    return _STDIN


def _out(text: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    try:
        stream.write(text + "\n")
        stream.flush()
    except (ValueError, OSError):  # stdout closed; the event log still has it
        pass


class ConsolePrinter:
    """Shows a run's human-facing events on stdout."""

    TYPES = (ev.MessageSent, ev.Progress, ev.AskOpened, ev.AskAnswered, ev.AskExpired, ev.StreamDelta)

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        # Streams shown here: how many characters of each were printed, and the one whose
        # line is open (its pieces are printed without a newline until it ends).
        self._printed: dict[str, int] = {}
        self._open_line: str | None = None
        self._file_asks: set[str] = set()  # open files asks: their answers are shown by name

    def _close_line(self) -> None:
        if self._open_line is not None:
            self._open_line = None
            _write_prompt("\n", self.stream)

    def _stream_piece(self, stream_id: str, offset: int, text: str) -> None:
        printed = self._printed.get(stream_id, 0)
        if offset < printed:  # a resumed stream says something else from here: a new line
            self._close_line()
            text, printed = "↻ " + text, offset
        if self._open_line != stream_id:
            self._close_line()
        self._open_line = stream_id
        self._printed[stream_id] = printed + len(text)
        _write_prompt(text, self.stream)

    def __call__(self, event: ev.Event, encoded: bytes = b"") -> None:
        t = type(event)
        if t is ev.StreamDelta:
            self._stream_piece(event.stream_id, event.offset, event.text)
            return
        if t is ev.MessageSent and event.kind == "stream" and isinstance(event.data, dict):
            sid = str(event.data.get("stream", ""))
            printed = self._printed.pop(sid, None)
            if printed is None:  # nothing of it shown here (a resumed stream): all of it
                self._close_line()
                _out(event.text, self.stream)
            else:
                if printed < len(event.text):
                    self._stream_piece(sid, printed, event.text[printed:])
                if self._open_line == sid:
                    self._open_line = None
                    _out("", self.stream)
            return
        self._close_line()
        if t is ev.MessageSent:
            _out(event.text, self.stream)
        elif t is ev.Progress:
            if event.state == "start":
                _out(f"⏳ {event.title}" + (f" (0/{event.total:g})" if event.total else ""), self.stream)
            elif event.state == "end":
                _out(f"✔ {event.title}" + (f" {event.subtitle}" if event.subtitle else ""), self.stream)
        elif t is ev.AskOpened:
            if event.ask_kind == "files":
                self._file_asks.add(event.ask_id)
                _out(f"❓ {files_question(event.prompt, event.files)}", self.stream)
            else:
                _out(f"❓ {question(event.prompt, event.options)}", self.stream)
        elif t is ev.AskAnswered:
            answer = event.answer
            if event.ask_id in self._file_asks:
                self._file_asks.discard(event.ask_id)
                answer = answered_files(answer)
            if event.by != "console":
                _out(f"→ {answer}  (answered by {event.by})", self.stream)
        elif t is ev.AskExpired:
            if event.reason == "timeout":
                _out(f"⌛ ask {event.ask_id} got no answer in time", self.stream)


def question(prompt: str, options: list[str]) -> str:
    if options:
        prompt += "  [" + " / ".join(f"{i}) {o}" for i, o in enumerate(options, 1)) + "]"
    return prompt


class ConsoleSource:
    """Answers asks from stdin: interactively on a terminal, line by line from a pipe."""

    name = "console"

    def __init__(self, lines: StdinLines | None = None, stream: TextIO | None = None) -> None:
        self.lines = lines or stdin_lines()
        self.stream = stream
        # One ask at a time reads stdin (first come, first served): a line answers one known
        # question, never whichever of several concurrent asks happened to read it.
        self._turn = trio.Lock()

    def available(self) -> bool:
        if self.lines.stream is None:
            return False
        return self.lines.isatty() or not self.lines.exhausted()

    async def serve(self, ask, broker) -> None:
        waited = self._turn.locked()
        async with self._turn:
            await self._serve(ask, broker, waited)

    async def _serve(self, ask, broker, waited: bool) -> None:
        # The question itself is printed by ConsolePrinter when the ask opens; with several
        # open, the console says which one the next line answers.
        tty = self.lines.isatty()
        info = ask.info
        if waited or sum(1 for a in broker.pending.values() if a.answer is None) > 1:
            shown = files_question(info.prompt, info.files) if info.kind == "files" else question(info.prompt, info.options)
            _out(f"↳ {shown}", self.stream)
        try:
            while True:
                if tty:
                    _write_prompt("> ", self.stream)
                line = await self.lines.readline()
                if line is None:
                    ask.gave_up.append("stdin reached end of input before an answer")
                    return
                if not tty:
                    _out(f"> {line}", self.stream)
                try:
                    value = line
                    if info.kind == "files":
                        # Checked and copied into the store off the event loop (files may be big).
                        value = await trio.to_thread.run_sync(_store_line, broker.runtime.blobs, line, info.files)
                    broker.answer(info.ask_id, value, by="console")
                    return
                except InvalidAnswer as exc:
                    _out(f"✗ {exc}", self.stream)
                except KeyError:
                    return  # answered elsewhere in the meantime
        except trio.Cancelled:
            if tty and ask.answer is not None and ask.by != "console":
                _out("", self.stream)  # end the abandoned "> " prompt line
            raise


def _store_line(blobs: Any, line: str, spec: ev.FileAskSpec | None) -> str:
    spec = spec or ev.FileAskSpec()
    return store_paths(blobs, split_paths(line, spec.multiple), spec)


def files_question(prompt: str, spec: ev.FileAskSpec | None) -> str:
    """How a files ask is put at a console: what to type, what it accepts, how large."""
    spec = spec or ev.FileAskSpec()
    what = "one or more file paths (quote paths with spaces)" if spec.multiple else "a file path"
    parts = [what]
    if spec.accept:
        parts.append("accepts " + ", ".join(spec.accept))
    parts.append(f"up to {_size_text(spec.max_bytes or DEFAULT_MAX_FILE_BYTES)} each")
    return f"{prompt}  ({'; '.join(parts)})"


def answered_files(answer: str) -> str:
    """A files answer (JSON of stored files) as people read it: names and sizes."""
    try:
        return ", ".join(f"{f.name} ({_size_text(f.size)})" for f in decode_files(answer))
    except Exception:  # untrusted text from the log: shown as it is
        return answer


def _write_prompt(text: str, stream: TextIO | None) -> None:
    stream = stream or sys.stdout
    try:
        stream.write(text)
        stream.flush()
    except (ValueError, OSError):
        pass
