"""The log writer: one task per runtime, group commit.

Emitting an event only encodes it onto its run's in-memory buffer (no syscall, no await). The
writer task wakes when something is pending, lets a short window collect more, then hands the
whole batch to a worker thread that appends it to each run's file, fsyncs, and feeds the index.
While one batch is on disk the next one accumulates, so the fsync cost is shared by every event
of a batch. A runtime that records fast hands the indexing to a process of its own
(``indexproc``), so that it does not share the run's GIL.

Durability (``AETHERGRAPH_DURABILITY``):

- ``strict``: ``record()`` returns only after its event is fsync'd (the writer skips its window
  while someone waits);
- ``batch`` (default): fsync'd within about ``BATCH_WINDOW`` seconds of being emitted while the
  disk keeps up; an emitter faster than the disk is held back (``wait_room``) so that nothing
  acknowledged stays unwritten much longer than ``LAG_TARGET``, however fast it records;
- ``off``: written to the OS on the same timer, never fsync'd (survives a process crash, not a
  power cut).

Faults: this process owns every log it writes (``owner``: an OS lock, taken by ``open_run``
before the first event, dropped once the last one is durable), so it alone may repair a torn
tail. A write that fails (disk full, I/O error, too many open files) is undone — the log is cut
back to the end of what was written before, later offsets are moved back to match — and the runs
that had events in that batch fail with ``StoreWriteError``: their strict waiters get it, and
``on_failure`` lets the runtime end them FAILED. Nothing failed is ever counted as durable, and
the next batch that can be written is written: the runtime goes on once there is space again.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from ..errors import RunBusy, StoreError, StoreWriteError
from ..events import ENCODER, Event, RunFinished
from . import owner
from .layout import StoreLayout, private_dirs
from .logfile import complete_size, repair_torn_tail
from .segment import Segment

if TYPE_CHECKING:
    from .indexproc import IndexProcess

log = logging.getLogger("aethergraph.store")
_clock = time.monotonic

DURABILITY_ENV = "AETHERGRAPH_DURABILITY"
DURABILITY_MODES = ("strict", "batch", "off")
BATCH_WINDOW = 0.005
OFF_WINDOW = 0.05
# Back-pressure on emitters that can wait (memory.record): once more than ROOM events are
# unwritten, an emitter waits while the oldest of them was emitted more than LAG_TARGET ago.
# So acknowledged-but-unwritten is bounded in time (about LAG_TARGET plus one batch on its way
# to disk): what a kill -9 in ``batch`` can lose. Short bursts the disk keeps up with never wait.
LAG_TARGET = 0.02
ROOM = 1_000
# A batch that writes this many logs or more is made durable with one syncfs(2) of the file
# system instead of an fsync per log and per new log's folder (see ``LogWriter._syncfs_pending``).
SYNCFS_MIN_LOGS = 8
HIGH_WATER = 100_000  # never more than this many unwritten events, whatever their age
# In ``batch`` and ``off``, once this many events have been indexed here, the index moves to a
# process of its own (``indexproc``: its own GIL, its own core; B3/B5). Below it a runtime never
# pays the process's start-up (~0.1-0.2 s of CPU): most runtimes record far less.
INDEX_PROCESS_AFTER = 20_000
LOG_MODE = 0o600


def resolve_durability(value: str | None = None) -> str:
    value = value or os.environ.get(DURABILITY_ENV) or "batch"
    if value not in DURABILITY_MODES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}; got {value!r}")
    return value


def max_open_logs() -> int:
    """How many run logs to keep open at once: a quarter of the descriptor limit (the rest is
    for sockets, SQLite, artifacts), at least 8, at most 512."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 4096
    return max(8, min(512, soft // 4))


def encode_error(event: Event, exc: BaseException) -> Exception:
    """A clear error for an event that cannot be JSON-encoded, naming the field at fault and
    what in it is wrong (``TypeError`` for a value of the wrong type, ``ValueError`` else)."""
    tag = type(event).__struct_config__.tag
    field = next((f for f in event.__struct_fields__ if _unencodable(getattr(event, f))), None)
    where = f"field {field!r} of the {tag} event" if field else f"the {tag} event"
    found = _diagnose(getattr(event, field)) if field else None
    if found is not None:
        cls, reason = found
    else:
        cls = TypeError if isinstance(exc, TypeError) else ValueError
        reason = str(exc) or type(exc).__name__
    return cls(f"cannot record {where} (run {event.run_id}): {reason}")


MAX_DEPTH = 500


def _unencodable(value: object) -> bool:
    try:
        ENCODER.encode(value)
    except Exception:
        return True
    return False


def _diagnose(value: object) -> tuple[type[Exception], str] | None:
    """What makes ``value`` unencodable, found without recursion (it may be nested too deep
    for that): a dict key that is not a string or number, a string that is not UTF-8, depth."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            return ValueError, f"nested more than {MAX_DEPTH} levels deep"
        t = type(v)
        if t is str:
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                return ValueError, f"a string that is not valid UTF-8 ({exc.reason}: {v[:40]!r})"
        elif t is dict:
            for k, item in v.items():
                if not isinstance(k, (str, int, float)):
                    return TypeError, (f"a dict key of type {type(k).__name__} ({k!r:.40}); "
                                       "keys must be strings or numbers")
                if isinstance(k, str):
                    stack.append((k, depth + 1))
                stack.append((item, depth + 1))
        elif t is list or t is tuple or t is set or t is frozenset:
            stack.extend((item, depth + 1) for item in v)
    return None


@attrs.define(eq=False)
class _RunLog:
    run_id: str
    path: Path
    fd: int | None
    position: int  # end of what has been handed to the disk thread
    created: bool  # the file exists (a resumed run, or after its first write)
    buf: bytearray = attrs.field(factory=bytearray)
    events: list[Event] = attrs.field(factory=list)
    offsets: list[int] = attrs.field(factory=list)
    tickets: list[int] = attrs.field(factory=list)
    closing: bool = False
    # A failure no later write can fix (the log belongs to another run: an id collision).
    fatal: StoreWriteError | None = None
    # The file's end is unknown (a failed write could not be undone): measure before writing.
    resync: bool = False


IndexSink = Callable[[list[Segment]], None]
FailureSink = Callable[[str, StoreWriteError], None]


class LogWriter:
    def __init__(
        self,
        layout: StoreLayout,
        durability: str = "batch",
        sink: IndexSink | None = None,
        on_failure: FailureSink | None = None,
    ) -> None:
        self.layout = layout
        self.durability = resolve_durability(durability)
        self.window = OFF_WINDOW if self.durability == "off" else BATCH_WINDOW
        self._sink = sink
        self.on_failure = on_failure
        self._runs: dict[str, _RunLog] = {}
        self._dirs: set[Path] = set()  # run folders known to exist
        self._open: OrderedDict[str, _RunLog] = OrderedDict()  # logs with an open fd, LRU first
        self._unsynced: dict[str, tuple[Segment, _RunLog]] = {}  # disk thread: see _write
        self._sync_failures: dict[str, tuple[Segment, OSError]] = {}
        self._fs_fd: int | None = None  # disk thread: the store's runs folder, for syncfs
        self.max_open = max_open_logs()
        self._appended = 0  # tickets handed out
        self._synced = 0  # tickets whose batch is on disk (fsync'd), or failed
        self._durable = 0  # ... and indexed: done (see _failed); what ``wait_durable`` waits for
        # Tickets of failed batches -> the error. Kept until ``_durable`` has moved past them
        # twice, so a waiter woken by one step still finds its ticket after the next.
        self._failed: dict[int, StoreWriteError] = {}
        self._failed_below = 0  # entries below this ticket may go
        # Written and fsync'd, not yet indexed (the index task takes them all at once).
        self._to_index: list[Segment] = []
        self._to_index_ticket = 0
        self._index_pending = trio.Event()
        # The index process (see ``INDEX_PROCESS_AFTER``); None until started, and again after
        # it ended: then this writer indexes in its own thread, as before it started.
        self.index_process_after: int | None = (
            INDEX_PROCESS_AFTER if self.durability != "strict" and sink is not None else None)
        self._indexer: IndexProcess | None = None
        self._indexed_here = 0  # events indexed by this process's thread
        self.failures = 0  # segments that could not be written, since the start
        self.waits = 0  # times an emitter waited for the disk (back-pressure)
        self.unwritten: list[StoreWriteError] = []  # runs whose last event never reached disk
        # Back-pressure: past this many unwritten events, emitters look at their age.
        self.room = ROOM
        self._since = 0.0  # when the oldest event not yet taken for a batch was emitted
        self._inflight_since = 0.0  # ... the oldest of the batch on its way to disk
        self._pending = trio.Event()
        self._urgent = trio.Event()
        self._flushed = trio.Event()
        self._running = False
        self.crash_after_flush: Callable[[], None] | None = None
        self._taps: list[IndexSink] = []  # see ``tap``

    # -- emitting (synchronous, from the trio thread) -----------------------------------------

    def open_run(self, run_id: str, *, resume: bool = False) -> Path:
        """Own a run's log and prepare it for appending.

        Takes the run's owner lock (``RunBusy`` if a live process has it). A new run's log is
        created, exclusively, by the disk thread with its first batch: an id that already has a
        log fails that run instead of writing into another run's history. A resumed run's torn
        tail (a crash mid-write) is cut here: only the owner may.
        """
        rl = self._runs.get(run_id)
        if rl is not None:
            if resume and rl.closing:  # it ended here a moment ago and is resumed at once
                rl.closing = False
                return rl.path
            raise RunBusy(run_id, os.getpid())  # two runs of this process with one id
        path = self.layout.run_log(run_id)
        if not owner.holds(self.layout, run_id):  # resume() / start_by_id() may have taken it
            owner.acquire(self.layout, run_id)
        try:
            if resume:
                repair_torn_tail(path)
                self._runs[run_id] = _RunLog(run_id, path, None, os.path.getsize(path), True)
            else:
                self._runs[run_id] = _RunLog(run_id, path, None, 0, False)
        except BaseException:
            owner.release(self.layout, run_id)
            raise
        return path

    def is_open(self, run_id: str) -> bool:
        """Is ``run_id``'s log open here (so this writer lets go of its owner lock at its end)?"""
        return run_id in self._runs

    def close_run(self, run_id: str) -> None:
        """The run has emitted its last event; its file closes after the next flush."""
        rl = self._runs.get(run_id)
        if rl is not None:
            rl.closing = True
            self._pending.set()

    def append(self, event: Event, encoded: bytes | None = None) -> int:
        """Queue ``event`` for its run's log; return its ticket for ``wait_durable``.

        ``encoded``: the event's JSON when the caller already has it (it is sent to live
        subscribers too: one encoding for the disk and the wire). An event that cannot be
        encoded raises ``TypeError``/``ValueError`` and leaves everything as it was."""
        rl = self._runs.get(event.run_id)
        if rl is None:
            raise StoreError(f"run {event.run_id} has no open log in this process")
        buf = rl.buf
        mark = len(buf)
        if encoded is None:
            try:
                ENCODER.encode_into(event, buf, -1)
            except Exception as exc:
                del buf[mark:]  # msgspec leaves what it wrote before failing
                raise encode_error(event, exc) from None
        else:
            buf += encoded
        buf.append(10)
        if not self._since:
            self._since = _clock()
        rl.offsets.append(rl.position + mark)
        rl.events.append(event)
        self._appended += 1
        rl.tickets.append(self._appended)
        pending = self._pending
        if not pending.is_set():  # set() is wrapped for KeyboardInterrupt safety: dearer
            pending.set()
        return self._appended

    @property
    def backlog(self) -> int:
        return self._appended - self._durable

    # -- tapping: the live events with the bytes the log gets (the sidecar's feed) ------------

    @property
    def last_ticket(self) -> int:
        """The ticket of the last event appended: events are numbered in the order emitted."""
        return self._appended

    def tap(self, callback: IndexSink) -> Callable[[], None]:
        """Call ``callback(segments)`` with every batch as it leaves the buffers (on the trio
        thread, before it goes to disk); returns the call that stops it. With ``buffered`` a
        reader sees every event as the log will hold it, at no cost per event: the sidecar
        reads live events here instead of from a bus call per event."""
        self._taps = [*self._taps, callback]

        def untap() -> None:
            self._taps = [t for t in self._taps if t is not callback]

        return untap

    def buffered(self, run_id: str = "") -> list[Segment]:
        """The events emitted and not yet taken for a batch (``run_id``'s, or every run's), as
        segments over the live buffers: views, not copies, good until the next checkpoint."""
        if run_id:
            rl = self._runs.get(run_id)
            runs = [rl] if rl is not None else []
        else:
            runs = self._runs.values()
        return [Segment(rl.run_id, rl.path, rl.position, rl.buf, rl.events, rl.offsets, rl.tickets)
                for rl in runs if rl.events]

    # -- waiting ------------------------------------------------------------------------------

    async def wait_durable(self, ticket: int | None = None) -> None:
        """Wait until the event with ``ticket`` is on disk (fsync'd), or, without a ticket,
        until everything so far is on disk and indexed (a reader's wait: what it asks the
        index for next is there).

        With a ticket, raises ``StoreWriteError`` if that event's batch could not be written.
        Without one, only waits: one run's failure is not every waiter's (a subscriber or a
        query waiting to read what is on disk goes on with what is there)."""
        check = ticket is not None
        if ticket is None:
            ticket = self._appended
        if (self._synced if check else self._durable) >= ticket:
            await trio.lowlevel.checkpoint()
        elif self._running:
            while (self._synced if check else self._durable) < ticket and self._running:
                if self._synced < ticket:  # else the index task is on its way: no empty flush
                    self._urgent.set()
                    self._pending.set()
                await self._flushed.wait()
        if check:
            err = self._failed.get(ticket)
            if err is not None:
                raise err

    def lag(self) -> float:
        """Seconds since the oldest event not yet written was emitted (0 when none)."""
        oldest = self._inflight_since or self._since
        return _clock() - oldest if oldest else 0.0

    def must_wait(self) -> bool:
        """Must an emitter that can wait (``memory.record``) wait for the disk now? When more
        than ``room`` events are unwritten and the oldest is older than ``LAG_TARGET``, or
        more than ``HIGH_WATER`` are unwritten or unindexed. The one test: ``wait_room`` waits
        while it holds, and an emitter calls ``wait_room`` only when it does (otherwise it
        yields on its own schedule: a wait that returns at once would neither yield nor let it).

        The time bound counts what is not yet on disk only (what a kill -9 can lose), not what
        waits for the index: the index is derived (rebuilt from the logs), and counting it
        made a fast loop wait for every index transaction, in batches of a few hundred events
        whose fixed costs (a transaction, an fsync) then dominated (B3, the bench note)."""
        appended = self._appended
        unwritten = appended - self._synced
        if unwritten > self.room:  # ``lag()`` inlined: this runs once per record
            oldest = self._inflight_since or self._since
            if unwritten > HIGH_WATER or (oldest and _clock() - oldest > LAG_TARGET):
                return self._running
        return self._running and appended - self._durable > HIGH_WATER

    async def wait_room(self) -> None:
        """Back-pressure for fast emitters: wait for the disk while ``must_wait``."""
        waited = False
        while self.must_wait():
            self.waits += 1
            waited = True
            if self._appended > self._synced:  # else it waits for the index: no empty flush
                self._urgent.set()
                self._pending.set()
            await self._flushed.wait()
        if not waited:  # the disk keeps up: as cheap as the emitter's usual path
            await trio.lowlevel.checkpoint_if_cancelled()

    # -- the writer task ----------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Write batches; beside it, a task indexes what is written. The two steps overlap:
        while one batch is being indexed the next is written and fsync'd, and the index takes
        everything written meanwhile in one transaction."""
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._index_loop)
                task_status.started()
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
            # emitted reaches the disk and the index before we let go. Runs being torn down at
            # the same moment may still emit their last events; ``close`` writes those.
            with trio.CancelScope(shield=True):
                await self._flush()
                await self._index_written()
                if self._indexer is not None:
                    proc, self._indexer = self._indexer, None
                    await trio.to_thread.run_sync(proc.stop)
                self._running = False
                self._wake()

    def _wake(self) -> None:
        """Wake whoever waits for the disk or the index (each checks what it waits for)."""
        flushed, self._flushed = self._flushed, trio.Event()
        flushed.set()

    async def _index_loop(self) -> None:
        while True:
            await self._index_pending.wait()
            self._index_pending = trio.Event()
            await self._index_written()

    async def _index_written(self) -> None:
        """Index every segment written since the last time, then count them done."""
        segments, ticket = self._to_index, self._to_index_ticket
        self._to_index = []
        if segments:
            with trio.CancelScope(shield=True):  # taken: indexed, even while shutting down
                await trio.to_thread.run_sync(self._index_somewhere, segments)
        self._indexed_to(ticket)

    def _index_somewhere(self, segments: list[Segment]) -> None:
        """Worker thread: have the index process index ``segments`` (up to their fsync'd
        ends), starting it once enough has been indexed here; or index them here when there is
        none or it is gone. Either way they are in the index when this returns."""
        from .indexproc import IndexProcess, IndexProcessGone  # only a runtime that indexes does

        proc = self._indexer
        after = self.index_process_after
        if proc is None and after is not None and self._indexed_here >= after:
            self.index_process_after = None  # one try per runtime
            try:
                proc = self._indexer = IndexProcess(self.layout.home)
            except OSError as exc:
                log.warning("could not start the index process (%s); indexing in this one", exc)
        if proc is not None:
            try:
                if proc.ready():
                    ends = {self._rel(seg.path): seg.end for seg in segments}  # the last wins
                    proc.index(list(ends.items()))
                    return
            except IndexProcessGone as exc:
                log.warning("%s; indexing in this process from now on", exc)
                self._indexer = None
                proc.stop(timeout=5)
        self._indexed_here += sum(len(seg.events) for seg in segments)
        self._index(segments)

    def _indexed_to(self, ticket: int) -> None:
        if ticket > self._durable:
            self._failed = {t: e for t, e in self._failed.items() if t >= self._failed_below}
            self._failed_below = self._durable + 1
            self._durable = ticket
            self._wake()

    def _index(self, segments: list[Segment]) -> None:
        if self._sink is not None and segments:
            try:
                self._sink(segments)
            except Exception:  # the index is derived; it catches up on the next open
                log.exception("indexing a batch failed; the index will catch up from the log")

    def close(self) -> None:
        """After the writer task has ended: write whatever is still buffered (synchronously),
        close every log and let go of every run.

        Raises ``StoreWriteError`` when a run's last events (its ``run_finished``) could not
        be written: the process must not end as if it had succeeded."""
        if self._indexer is not None:  # the writer task did not get to end it
            proc, self._indexer = self._indexer, None
            proc.stop()
        segments = self._take_segments()
        if segments:
            self._settle(segments, self._write(segments, {s.run_id: self._runs[s.run_id] for s in segments})[0])
        self._synced = self._durable = self._appended
        if self._fs_fd is not None:
            fd, self._fs_fd = self._fs_fd, None
            os.close(fd)
        for rl in self._runs.values():
            self._close_fd(rl)
            owner.release(self.layout, rl.run_id)
        self._runs.clear()
        if self.unwritten:
            first = self.unwritten[0]
            more = f" (and {len(self.unwritten) - 1} more runs)" if len(self.unwritten) > 1 else ""
            raise StoreWriteError(f"the end of a run was not written: {first}{more}") from first

    def _take_segments(self) -> list[Segment]:
        self._inflight_since, self._since = self._since, 0.0
        segments: list[Segment] = []
        for rl in self._runs.values():
            if rl.buf:
                segments.append(Segment(rl.run_id, rl.path, rl.position, bytes(rl.buf),
                                        rl.events, rl.offsets, rl.tickets))
                rl.position += len(rl.buf)
                rl.buf = bytearray()
                rl.events = []
                rl.offsets = []
                rl.tickets = []
        for tap in self._taps if segments else ():
            try:
                tap(segments)
            except Exception:  # a reader's fault must not cost the log its batch
                log.exception("a writer tap failed")
        return segments

    async def _flush(self) -> None:
        # strict: indexed by the disk thread before the batch counts as done, as a reader
        # could expect of an acknowledged record; else by the index task, beside the next batch.
        inline = self.durability == "strict"
        segments = self._take_segments()
        ticket = self._appended
        if segments:
            logs = {seg.run_id: self._runs[seg.run_id] for seg in segments}
            try:
                results, written = await trio.to_thread.run_sync(self._write, segments, logs, inline)
            finally:
                self._inflight_since = 0.0
            self._settle(segments, results)
            self._to_index.extend(written)
        self._synced = ticket
        if inline:
            self._indexed_to(ticket)
        else:
            self._to_index_ticket = ticket
            self._index_pending.set()
        if self.crash_after_flush is not None:
            self.crash_after_flush()  # fault injection (crash tests): die with this on disk
        self._wake()
        for run_id in [r for r, rl in self._runs.items() if rl.closing and not rl.buf]:
            rl = self._runs.pop(run_id)
            self._close_fd(rl)
            owner.release(self.layout, run_id)  # its last event is as durable as it will be

    def _settle(self, segments: list[Segment], results: dict[str, tuple]) -> None:
        """Back on the trio thread: move positions to where the files really end, and fail
        the runs whose segment could not be written."""
        if not results:
            return
        by_run = {seg.run_id: seg for seg in segments}
        for run_id, (err, delta) in results.items():
            rl = self._runs.get(run_id)
            if rl is not None and delta:
                # What was emitted while the batch was on its way starts where the file ends.
                rl.position += delta
                rl.offsets = [o + delta for o in rl.offsets]
            if err is None:
                continue
            seg = by_run[run_id]
            self.failures += 1
            for t in seg.tickets:
                self._failed[t] = err
            log.error("%s (%d events of run %s not written; the run fails)", err, len(seg.events), run_id)
            if seg.events and type(seg.events[-1]) is RunFinished:
                self.unwritten.append(err)
            if self.on_failure is not None:
                try:
                    self.on_failure(run_id, err)
                except Exception:
                    log.exception("reporting a log write failure failed")

    # -- the disk thread ----------------------------------------------------------------------

    def _write(
        self, segments: list[Segment], logs: dict[str, _RunLog], index: bool = True,
    ) -> tuple[dict[str, tuple], list[Segment]]:
        """Runs in a worker thread: append, fsync, then (``index``) index what is now on disk.

        Returns, per run that needs it, ``(error or None, how far its position moved)``, and
        the segments now on disk and not yet indexed."""
        sync = self.durability != "off"
        whole_fs = sync and len(segments) >= SYNCFS_MIN_LOGS and self._can_syncfs()
        results: dict[str, tuple] = {}
        written: list[Segment] = []
        new_logs: list[Segment] = []
        # Written, not yet fsync'd: all of a batch's files are fsync'd together at the end (in
        # parallel when there are many: one journal commit then serves several).
        self._unsynced: dict[str, tuple[Segment, _RunLog]] = {}
        self._sync_failures: dict[str, tuple[Segment, OSError]] = {}
        for seg in segments:
            rl = logs[seg.run_id]
            created = rl.created
            try:
                delta = self._write_segment(seg, rl)
            except OSError as exc:
                results[seg.run_id] = (self._write_failed(seg, rl, exc), self._undo(seg, rl))
                continue
            if delta:
                results[seg.run_id] = (None, delta)
            if not created:
                new_logs.append(seg)
            written.append(seg)
            if sync:
                self._unsynced[seg.run_id] = (seg, rl)
        if sync:
            if whole_fs:
                self._syncfs_pending()
            else:
                self._fsync_pending()
            for run_id, (seg, exc) in self._sync_failures.items():
                rl = logs[run_id]
                written.remove(seg)
                if seg in new_logs:
                    new_logs.remove(seg)
                moved = results.get(run_id, (None, 0))[1]
                results[run_id] = (self._write_failed(seg, rl, exc), moved + self._undo(seg, rl))
        if sync and new_logs and not whole_fs:  # a new log's name must survive a power cut too
            for folder in {seg.path.parent for seg in new_logs}:
                try:
                    _fsync_dir(folder)
                except OSError as exc:
                    for seg in [s for s in new_logs if s.path.parent == folder]:
                        written.remove(seg)
                        results[seg.run_id] = (self._write_failed(seg, logs[seg.run_id], exc), 0)
        if index:
            self._index(written)
            return results, []
        return results, written

    def _fsync_pending(self) -> None:
        """fsync every log this batch wrote to (one closed meanwhile was fsync'd first)."""
        items = list(self._unsynced.items())
        self._unsynced = {}

        def one(item: tuple[str, tuple[Segment, _RunLog]]) -> None:
            run_id, (seg, rl) = item
            try:
                os.fsync(rl.fd)
            except OSError as exc:
                self._sync_failures[run_id] = (seg, exc)

        if len(items) > 2:
            list(_fsync_pool().map(one, items))
        else:
            for item in items:
                one(item)

    def _can_syncfs(self) -> bool:
        """Whether this batch can be made durable with one syncfs (Linux). Called before the
        batch writes anything: the descriptor syncfs reports errors through must be open
        before the writes it vouches for (it reports the file system's write-back errors
        since it was opened or last synced, not older ones)."""
        if _syncfs_call() is None:
            return False
        if self._fs_fd is None:
            try:
                self._fs_fd = os.open(self.layout.runs_dir, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
        return True

    def _syncfs_pending(self) -> None:
        """Make every log this batch wrote to durable with one ``syncfs`` of the file system,
        their new names included: one journal commit for all, where an fsync per new log and
        per folder costs a commit each (``bench/micro/new_logs_floor.py --sync``: 200 new logs
        a batch, ~290 -> ~180 µs wall a log). It flushes other processes' dirty data on the
        file system too, so it is kept for batches of many logs. Its error belongs to the file
        system, not to one log: every log of the batch fails with it, as its own fsync would."""
        items = self._unsynced
        self._unsynced = {}
        try:
            _syncfs_call()(self._fs_fd)
        except OSError as exc:
            for run_id, (seg, _rl) in items.items():
                self._sync_failures[run_id] = (seg, exc)

    def _write_segment(self, seg: Segment, rl: _RunLog) -> int:
        if rl.fatal is not None:
            raise rl.fatal
        delta = 0
        fd = rl.fd
        if fd is None:
            fd = self._open_log(rl)
        else:
            self._open.move_to_end(rl.run_id)
        if rl.resync:
            # A failed write could not be cut back: find the end of the last whole line
            # (we own the log) and put this batch there.
            end = complete_size(rl.path)
            os.ftruncate(fd, end)
            rl.resync = False
            delta = end - seg.start
            if delta:
                seg.start = end
                seg.offsets = [o + delta for o in seg.offsets]
        view = memoryview(seg.data)
        while view:
            view = view[os.write(fd, view) :]
        return delta

    def _open_log(self, rl: _RunLog) -> int:
        while len(self._open) >= self.max_open:  # keep the descriptors bounded: close the idlest
            _, idle = self._open.popitem(last=False)
            waiting = self._unsynced.pop(idle.run_id, None)
            if waiting is not None:  # written by this batch: durable before it is closed
                try:
                    os.fsync(idle.fd)
                except OSError as exc:
                    self._sync_failures[idle.run_id] = (waiting[0], exc)
            self._close_fd(idle)
        if rl.created:
            fd = os.open(rl.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        else:
            folder = rl.path.parent
            if folder not in self._dirs:
                private_dirs(folder)
                self._dirs.add(folder)
            try:
                # Exclusive: a log that exists belongs to another run with the same id.
                fd = os.open(rl.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             LOG_MODE)
            except FileExistsError:
                rl.fatal = StoreWriteError(
                    f"run id collision: {self._rel(rl.path)} already exists (another run has "
                    f"this id); run {rl.run_id} is not recorded")
                raise rl.fatal from None
            rl.created = True
        rl.fd = fd
        self._open[rl.run_id] = rl
        return fd

    def _close_fd(self, rl: _RunLog) -> None:
        if rl.fd is not None:
            self._open.pop(rl.run_id, None)
            fd, rl.fd = rl.fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def _undo(self, seg: Segment, rl: _RunLog) -> int:
        """After a failed write: cut the log back to where this segment started, so nothing
        partial is glued to the next batch. Returns how far the run's position moves."""
        if rl.fatal is not None or not rl.created:
            return -len(seg.data)  # nothing of it reached the file
        try:
            fd = rl.fd if rl.fd is not None else self._open_log(rl)
            os.ftruncate(fd, seg.start)
        except OSError:
            rl.resync = True  # measure the real end before the next write
            self._close_fd(rl)
            return 0
        return -len(seg.data)

    def _write_failed(self, seg: Segment, rl: _RunLog, exc: OSError) -> StoreWriteError:
        if isinstance(exc, StoreWriteError):
            return exc
        what = {
            errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
            errno.EMFILE: "too many open files", errno.ENFILE: "too many open files",
        }.get(exc.errno, "error")
        err = StoreWriteError(f"{what} writing {self._rel(seg.path)}: {exc}", exc.errno)
        err.__cause__ = exc
        return err

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.layout.home))
        except ValueError:
            return str(path)


_POOL: list[ThreadPoolExecutor] = []
FSYNC_THREADS = 32


def _fsync_pool() -> ThreadPoolExecutor:
    """Threads to fsync a batch's many logs at once (created on first need, as many as are
    used). Concurrent fsyncs share ext4 journal commits: 200 freshly written logs (a B1
    ``top+record`` batch) took a median 17 ms to fsync with 8 threads and 10 ms with 32; create +
    write + fsync of 10 such batches 198-308 against 258-336 µs a file (alternating, shared box)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=FSYNC_THREADS, thread_name_prefix="aethergraph-fsync"))
    return _POOL[0]


def _fsync_dir(path: Path) -> None:
    """Make a new directory entry durable (a new log file would otherwise vanish on power loss)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LIBC_SYNCFS: list = []


def _syncfs_call() -> Callable[[int], None] | None:
    """``syncfs(fd)``: make everything written to the file system of ``fd`` durable; raises
    ``OSError`` as ``os.fsync`` does. None where there is none (not Linux): then every log is
    fsync'd on its own. ``os.syncfs`` when ``os`` has it (tests stand one in), else the C
    library's."""
    call = getattr(os, "syncfs", None)
    return call if call is not None else _libc_syncfs()


def _libc_syncfs() -> Callable[[int], None] | None:
    """The C library's ``syncfs`` as a function that raises ``OSError`` (looked up once)."""
    if not _LIBC_SYNCFS:
        call = None
        try:
            import ctypes

            c_syncfs = ctypes.CDLL(None, use_errno=True).syncfs
            c_syncfs.argtypes = [ctypes.c_int]
        except (OSError, AttributeError):
            c_syncfs = None
        if c_syncfs is not None:
            def call(fd: int, _c=c_syncfs, _errno=ctypes.get_errno) -> None:
                if _c(fd) != 0:
                    err = _errno()
                    raise OSError(err, os.strerror(err))
        _LIBC_SYNCFS.append(call)
    return _LIBC_SYNCFS[0]
