"""The log writer: one task per runtime, group commit.

Emitting an event only encodes it onto its run's in-memory buffer (no syscall, no await). The
writer task wakes when something is pending, lets a short window collect more, then hands the
whole batch to a worker thread that appends it to each run's file, fsyncs, and feeds the index.
While one batch is on disk the next one accumulates, so the fsync cost is shared by every event
of a batch.

Durability (``AETHERGRAPH_DURABILITY``):

- ``strict``: ``record()`` returns only after its event is fsync'd (the writer skips its window
  while someone waits);
- ``batch`` (default): fsync'd within about ``BATCH_WINDOW`` seconds of being emitted;
- ``off``: written to the OS on the same timer, never fsync'd (survives a process crash, not a
  power cut).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from ..events import ENCODER, Event
from .layout import StoreLayout, open_private, private_dirs
from .logfile import repair_torn_tail

log = logging.getLogger("aethergraph.store")

DURABILITY_ENV = "AETHERGRAPH_DURABILITY"
DURABILITY_MODES = ("strict", "batch", "off")
BATCH_WINDOW = 0.005
OFF_WINDOW = 0.05
# Past this many unwritten events, emitters that can wait (memory.record) wait for the disk.
HIGH_WATER = 200_000


def resolve_durability(value: str | None = None) -> str:
    value = value or os.environ.get(DURABILITY_ENV) or "batch"
    if value not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}; got {value!r}")
    return value


@attrs.define(eq=False)
class Segment:
    """A run's bytes appended by one batch, with where each event starts."""

    run_id: str
    path: Path
    start: int
    data: bytes
    events: list[Event]
    offsets: list[int]

    @property
    def end(self) -> int:
        return self.start + len(self.data)


@attrs.define(eq=False)
class _RunLog:
    run_id: str
    path: Path
    file: object
    position: int  # end of what has been handed to the disk thread
    buf: bytearray = attrs.field(factory=bytearray)
    events: list[Event] = attrs.field(factory=list)
    offsets: list[int] = attrs.field(factory=list)
    closing: bool = False


IndexSink = Callable[[list[Segment]], None]


class LogWriter:
    def __init__(
        self,
        layout: StoreLayout,
        durability: str = "batch",
        sink: IndexSink | None = None,
    ) -> None:
        self.layout = layout
        self.durability = resolve_durability(durability)
        self.window = OFF_WINDOW if self.durability == "off" else BATCH_WINDOW
        self._sink = sink
        self._runs: dict[str, _RunLog] = {}
        self._dirs: set[Path] = set()  # run folders known to exist
        self._appended = 0  # tickets handed out
        self._durable = 0  # tickets known on disk (fsync'd unless durability is off)
        self._pending = trio.Event()
        self._urgent = trio.Event()
        self._flushed = trio.Event()
        self._running = False
        self._failure: BaseException | None = None
        self.crash_after_flush: Callable[[], None] | None = None

    # -- emitting (synchronous, from the trio thread) -----------------------------------------

    def open_run(self, run_id: str) -> Path:
        """Prepare a run's log for appending (repairing a torn tail a crash left).

        A new log is created by the disk thread with its first batch (and its folder fsync'd
        once per batch), so starting a run costs no syscall on the event loop."""
        if run_id in self._runs:
            self._runs[run_id].closing = False
            return self._runs[run_id].path
        path = self.layout.run_log(run_id)
        if os.path.exists(path):  # resuming: append after what is there
            repair_torn_tail(path)
            f = open(path, "ab", buffering=0, opener=open_private)
            self._runs[run_id] = _RunLog(run_id, path, f, f.seek(0, os.SEEK_END))
        else:
            self._runs[run_id] = _RunLog(run_id, path, None, 0)
        return path

    def close_run(self, run_id: str) -> None:
        """The run has emitted its last event; its file closes after the next flush."""
        rl = self._runs.get(run_id)
        if rl is not None:
            rl.closing = True
            self._pending.set()

    def append(self, event: Event, encoded: bytes | None = None) -> int:
        """Queue ``event`` for its run's log; return its ticket for ``wait_durable``.

        ``encoded``: the event's JSON when the caller already has it (it is sent to live
        subscribers too: one encoding for the disk and the wire)."""
        rl = self._runs[event.run_id]
        buf = rl.buf
        rl.offsets.append(rl.position + len(buf))
        if encoded is None:
            ENCODER.encode_into(event, buf, -1)
        else:
            buf += encoded
        buf.append(10)
        rl.events.append(event)
        self._appended += 1
        self._pending.set()
        return self._appended

    @property
    def backlog(self) -> int:
        return self._appended - self._durable

    # -- waiting ------------------------------------------------------------------------------

    async def wait_durable(self, ticket: int | None = None) -> None:
        """Wait until the event with ``ticket`` (default: everything so far) is on disk."""
        if ticket is None:
            ticket = self._appended
        if self._durable >= ticket:
            await trio.lowlevel.checkpoint()
            return
        if not self._running:
            return  # shutting down: ``close`` writes what is left
        while self._durable < ticket:
            self._check_failure()
            self._urgent.set()
            self._pending.set()
            await self._flushed.wait()
        self._check_failure()

    async def wait_room(self) -> None:
        """Back-pressure for fast emitters: wait while too much is queued."""
        if self._appended - self._durable > HIGH_WATER:
            await self.wait_durable(self._appended - HIGH_WATER // 2)

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise OSError(f"the event log could not be written: {self._failure}") from self._failure

    # -- the writer task ----------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._running = True
        task_status.started()
        try:
            while True:
                await self._pending.wait()
                self._pending = trio.Event()
                if not self._urgent.is_set():
                    with trio.move_on_after(self.window):
                        await self._urgent.wait()
                self._urgent = trio.Event()
                await self._flush()
        finally:
            # Whatever ends the runtime (normal exit, Ctrl-C, a crash in a node), what was
            # emitted reaches the disk before we let go. Runs being torn down at the same
            # moment may still emit their last events; ``close`` writes those.
            with trio.CancelScope(shield=True):
                await self._flush()
                self._running = False

    def close(self) -> None:
        """After the writer task has ended: write whatever is still buffered (synchronously)
        and close every log. The last word of a run cancelled with its runtime lands here."""
        segments = self._take_segments()
        if segments:
            self._write(segments, {seg.run_id: self._runs[seg.run_id] for seg in segments})
        self._durable = self._appended
        for rl in self._runs.values():
            if rl.file is not None:
                rl.file.close()
        self._runs.clear()

    def _take_segments(self) -> list[Segment]:
        segments: list[Segment] = []
        for rl in self._runs.values():
            if rl.buf:
                segments.append(
                    Segment(rl.run_id, rl.path, rl.position, bytes(rl.buf), rl.events, rl.offsets)
                )
                rl.position += len(rl.buf)
                rl.buf = bytearray()
                rl.events = []
                rl.offsets = []
        return segments

    async def _flush(self) -> None:
        segments = self._take_segments()
        ticket = self._appended
        if segments:
            files = {seg.run_id: self._runs[seg.run_id] for seg in segments}
            try:
                await trio.to_thread.run_sync(self._write, segments, files)
            except OSError as exc:
                # Keep the runtime alive long enough to report; waiters see the failure.
                self._failure = exc
                log.error("event log write failed: %s", exc)
        self._durable = ticket
        if self.crash_after_flush is not None:
            self.crash_after_flush()  # fault injection (crash tests): die with this on disk
        flushed, self._flushed = self._flushed, trio.Event()
        flushed.set()
        for run_id in [r for r, rl in self._runs.items() if rl.closing and not rl.buf]:
            rl = self._runs.pop(run_id)
            if rl.file is not None:
                rl.file.close()

    def _write(self, segments: list[Segment], logs: dict[str, _RunLog]) -> None:
        """Runs in a worker thread: append, fsync, then index what is now on disk."""
        sync = self.durability != "off"
        new_dirs: set[Path] = set()
        for seg in segments:
            rl = logs[seg.run_id]
            if rl.file is None:
                folder = seg.path.parent
                if folder not in self._dirs:
                    private_dirs(folder)
                    self._dirs.add(folder)
                rl.file = open(seg.path, "ab", buffering=0, opener=open_private)
                new_dirs.add(folder)
            f = rl.file
            view = memoryview(seg.data)
            while view:
                view = view[f.write(view) :]
            if sync:
                os.fsync(f.fileno())
        if sync:
            for folder in new_dirs:  # a new log's name must survive a power cut too
                _fsync_dir(folder)
        if self._sink is not None:
            try:
                self._sink(segments)
            except Exception:  # the index is derived; it catches up on the next open
                log.exception("indexing a batch failed; the index will catch up from the log")


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable (a new log file would otherwise vanish on power loss)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
