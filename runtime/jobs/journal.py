"""Jobs' records and states in the store: one append-only journal per writing process.

Process jobs (``ProcessRunner``): the runtime journals each record before it hands the job to
its job host, and the host journals the claim, RUNNING and the final state (``supervise.py``);
the job's folder is its claim and holds its output. Cluster jobs, below:

A dask job's durable facts are its events in the run's log and its task on the scheduler (the
published name keeps it across a runtime's death). What other processes read from the store —
``ag jobs``, the dashboard's Jobs tab, a resume, ``ag jobs cancel`` — is its record (what was
submitted, by whom) and its last state. A folder of files per job gave them that at four file
creations or renames per job (~1 ms of the runtime's thread on this disk, B10); here the same
facts are lines appended to one file of the writing process:

    <home>/jobs/journal/<pid>-<start>-<tag>.jsonl   one JournalEntry a line

An append is a ``write`` of a few hundred bytes per line (no new inode, no rename), and a
runtime gathers lines and writes them in one ``write`` per burst, from a thread: before it hands
jobs to the cluster and before it lets the cluster forget jobs whose end it recorded, so the
journal never knows less than the cluster would need for a resume. The writer's own
process may die mid-line (``kill -9``): a line without its newline is not read. Readers merge
every journal: the record wherever it is, and the state by "a state never goes back" (an end
beats anything, the first end recorded wins; RUNNING beats QUEUED), since after a resume two
processes' journals speak of one job.

A job with a journal record has no ``spec.json``; a cluster job's folder (``jobs/<job_id>/``)
appears only when there is something to put in it — an argv job's output, a cancel request. The key → job
binding stays the ``by-key`` link (``JobStore.bind_key``): it decides between processes, and a
record is appended before its key is bound, so whoever finds the key finds the record.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import msgspec

from .protocol import ENCODER, JobRecord, JobState, JobStatus
from .store import DIR_MODE, FILE_MODE, JobStore, _tmp_suffix, proc_alive, proc_start_time


class JournalEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line: a job's record (once, at its birth), a state it moved to, or a record
    withdrawn (the job lost the race for its key and was never handed out)."""

    record: JobRecord | None = None
    status: JobStatus | None = None
    discarded: str = ""


ENTRY_DECODER = msgspec.json.Decoder(JournalEntry)

_RANK = {JobState.QUEUED: 0, JobState.RUNNING: 1}


def _better(new: JobStatus, old: JobStatus | None) -> bool:
    """Does ``new`` replace ``old`` as what is known? A state never goes back."""
    if old is None:
        return True
    if old.terminal:
        return new.terminal and (new.ended or 0) < (old.ended or 0)
    return new.terminal or _RANK[new.state] >= _RANK[old.state]


class JournalWriter:
    """This process's journal, opened on the first write. Lines are written at once
    (``append``) or gathered (``add``) and written together by ``flush``, from any thread:
    each flush is one ``write`` to an O_APPEND file (a ``write`` costs ~0.2 ms of the
    runtime's thread on this disk under load, B10: per burst, not per job)."""

    def __init__(self, root: str) -> None:
        self.folder = f"{root}/journal"
        pid = os.getpid()
        self.path = f"{self.folder}/{pid}-{proc_start_time(pid) or 0}-{_tmp_suffix().split('-')[-1]}.jsonl"
        self._fd = -1
        self._pending: list[bytes] = []
        self._lock = threading.Lock()

    def add(self, entries: list[JournalEntry]) -> bool:
        """Gather lines for the next ``flush``; True when they are the first since the last."""
        lines = [ENCODER.encode(e) + b"\n" for e in entries]
        with self._lock:
            first = not self._pending
            self._pending.extend(lines)
        return first

    def append(self, entries: list[JournalEntry], *, fsync: bool = False) -> None:
        """Write ``entries`` now (after any gathered ones, in one ``write``)."""
        self.add(entries)
        self.flush(fsync=fsync)

    def flush(self, *, fsync: bool = False) -> None:
        with self._lock:  # held through the write: lines reach the file in the order added
            pending, self._pending = self._pending, []
            if pending:
                self._write(b"".join(pending), fsync)

    def _write(self, data: bytes, fsync: bool) -> None:
        if self._fd < 0:
            try:
                os.mkdir(self.folder, DIR_MODE)
            except FileExistsError:
                pass
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class JournalReader:
    """Every journal of a store, read incrementally: each file from where the last read of it
    stopped; a file whose writer is gone and that was read to its end is not looked at again."""

    def __init__(self, root: str) -> None:
        self.folder = f"{root}/journal"
        self.records: dict[str, JobRecord] = {}
        self.states: dict[str, JobStatus] = {}
        # How many times each job's state was replaced: what a runner compares to notice a change.
        self.versions: dict[str, int] = {}
        self._offsets: dict[str, int] = {}
        self._finished: set[str] = set()

    def catch_up(self) -> None:
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return
        for entry in entries:
            name = entry.name
            if name in self._finished or not name.endswith(".jsonl"):
                continue
            offset = self._offsets.get(name, 0)
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue
            if size <= offset:
                pid, _, rest = name.partition("-")
                start = rest.partition("-")[0]
                if pid.isdigit() and start.isdigit() and not proc_alive(int(pid), int(start)):
                    self._finished.add(name)
                continue
            with open(entry.path, "rb") as f:
                f.seek(offset)
                data = f.read(size - offset)
            end = data.rfind(b"\n") + 1  # a line still being written (or torn) is left for later
            self._offsets[name] = offset + end
            for line in data[:end].splitlines():
                if line:
                    self._apply(line)

    def _apply(self, line: bytes) -> None:
        try:
            e = ENTRY_DECODER.decode(line)
        except msgspec.DecodeError:
            return
        if e.record is not None:
            self.records[e.record.job_id] = e.record
        if e.status is not None and _better(e.status, self.states.get(e.status.job_id)):
            self.states[e.status.job_id] = e.status
            self.versions[e.status.job_id] = self.versions.get(e.status.job_id, 0) + 1
        if e.discarded:
            self.records.pop(e.discarded, None)
            self.states.pop(e.discarded, None)

    def record(self, job_id: str) -> JobRecord | None:
        if job_id not in self.records:
            self.catch_up()
        return self.records.get(job_id)

    def status(self, job_id: str, *, catch_up: bool = True) -> JobStatus | None:
        """The job's last state (QUEUED from its record when none was written); None when the
        journals do not know the job. ``catch_up=False``: as last read."""
        st = self.states.get(job_id)
        if catch_up and (st is None or not st.terminal):
            self.catch_up()
            st = self.states.get(job_id)
        if st is not None:
            return msgspec.structs.replace(st)
        rec = self.records.get(job_id)
        return rec.queued() if rec is not None else None

    def ids(self) -> list[str]:
        self.catch_up()
        return list(self.records)


class JournaledStore(JobStore):
    """The store of a runner whose jobs are journaled (``DaskRunner``): new jobs get a journal
    record, not a folder; their states are journal lines. Jobs with a folder (written by an
    earlier version) are written there, as before."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        super().__init__(home)
        self._writer = JournalWriter(self._root)
        # Set by a runner that flushes gathered lines itself (called when the first line of a
        # batch is gathered); without it every line is written at once.
        self.on_pending: Callable[[], None] | None = None

    def _put(self, entries: list[JournalEntry], *, now: bool = False, fsync: bool = False) -> None:
        if now or fsync or self.on_pending is None:
            self.writer.append(entries, fsync=fsync)
        elif self.writer.add(entries):
            self.on_pending()

    def create(self, record: JobRecord) -> None:
        # With a key, written before the key is bound: whoever finds the key finds the record.
        # Without, gathered: the runner flushes before it hands the job to the cluster.
        self._put([JournalEntry(record=record)], now=bool(record.key))
        self._journaled.add(record.job_id)

    def discard(self, job_id: str) -> None:
        if job_id in self._journaled:
            self.writer.append([JournalEntry(discarded=job_id)])
        else:
            super().discard(job_id)

    def claim(self, status: JobStatus) -> bool:
        """A journaled cluster job is claimed at birth by the runtime that submitted it (its
        record names it): that runtime alone moves it out of QUEUED, so its claim is a state
        line. A process job is claimed by its folder (``JobStore.claim_folder``)."""
        if status.runner != "process" and self.journaled(status.job_id):
            self.writer.append([JournalEntry(status=status)])
            return True
        return super().claim(status)

    def write_many(self, statuses: list[JobStatus], *, fsync: bool = False) -> None:
        """Several states at once: the journaled ones in one append."""
        lines = []
        for st in statuses:
            if self.journaled(st.job_id):
                lines.append(JournalEntry(status=st))
            else:
                super().write(st, fsync=fsync)
        if lines:
            self._put(lines, fsync=fsync)

    def output_dir(self, job_id: str) -> str:
        """The job's folder, made when the first thing to put in it comes (output)."""
        d = self.path(job_id)
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            pass
        return d


__all__ = ["JournalEntry", "JournalReader", "JournalWriter", "JournaledStore"]
