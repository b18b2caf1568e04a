"""Reading run logs, and repairing the one kind of damage a crash can do to them.

A log is JSON lines, appended only. A process killed mid-write can leave one partial line at the
end (a *torn tail*); nothing else is ever rewritten. Readers therefore:

- treat only newline-terminated lines as written, and never write: a torn tail is either still
  being written by the run's owner or left by a crash, and only the run's next owner (the
  process holding its lock in ``owner``: ``ag resume``) cuts it off (``repair_torn_tail``);
- skip a line that does not decode (bit rot, a hand edit, non-UTF-8 bytes) with a warning naming
  the file and line, and carry on: one bad line must not hide the rest of a run's history.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import attrs
import msgspec

from ..events import DECODER, Event

log = logging.getLogger("aethergraph.store")

CHUNK = 8 << 20


@attrs.frozen
class BadLine:
    path: Path
    line_no: int | None  # 1-based; None when reading started mid-file
    offset: int
    reason: str
    end: int = 0

    def __str__(self) -> str:
        where = f"line {self.line_no}" if self.line_no is not None else f"byte {self.offset}"
        return f"{self.path}:{where}: skipped unreadable line ({self.reason})"


@attrs.frozen
class LogRecord:
    offset: int  # where the line starts
    end: int  # just past its newline
    event: Event
    line: bytes  # the line as stored, without its newline


def read_log(
    path: Path,
    *,
    start: int = 0,
    bad_lines: list[BadLine] | None = None,
    warn: bool = True,
    include_bad: bool = False,
) -> Iterator[LogRecord | BadLine]:
    """Yield every complete, decodable event line of ``path`` from byte ``start``.

    Bad lines are skipped, appended to ``bad_lines`` and (with ``warn``) logged. A torn tail is
    not yielded and not reported: it is either still being written or will be repaired.
    With ``include_bad`` the bad lines are yielded too, so a caller can tell how far it read.
    """
    line_no: int | None = 1 if start == 0 else None
    offset = start
    with open(path, "rb") as f:
        f.seek(start)
        carry = b""
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return
            data = carry + chunk if carry else chunk
            last_nl = data.rfind(b"\n")
            if last_nl < 0:
                carry = data
                continue
            carry = data[last_nl + 1 :]
            pos = 0
            body_end = last_nl + 1
            while pos < body_end:
                nl = data.index(b"\n", pos)
                line = data[pos:nl]
                if line.strip():
                    try:
                        event = DECODER.decode(line)
                    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                        bad = BadLine(path, line_no, offset + pos, _reason(exc), offset + nl + 1)
                        if bad_lines is not None:
                            bad_lines.append(bad)
                        if warn:
                            log.warning("%s", bad)
                        if include_bad:
                            yield bad
                    else:
                        yield LogRecord(offset + pos, offset + nl + 1, event, line)
                pos = nl + 1
                if line_no is not None:
                    line_no += 1
            offset += body_end


def read_events(path: Path, **kwargs) -> list[Event]:
    return [rec.event for rec in read_log(path, **kwargs)]


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def complete_size(path: Path) -> int:
    """Size of the newline-terminated part of the file: where a torn tail starts."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    with open(path, "rb") as f:
        back = min(size, 1 << 16)
        while True:
            f.seek(size - back)
            block = f.read(back)
            nl = block.rfind(b"\n")
            if nl >= 0:
                return size - back + nl + 1
            if back == size:
                return 0
            back = min(size, back * 4)


def repair_torn_tail(path: Path) -> int:
    """Cut a partial last line off; return how many bytes were removed.

    Only for the run's owner (it holds the run's lock, see ``owner``), which appends next.
    """
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return 0
    good = complete_size(path)
    if good == size:
        return 0
    with open(path, "r+b") as f:
        f.truncate(good)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s: cut a torn last line (%d bytes) left by a crash", path, size - good)
    return size - good
