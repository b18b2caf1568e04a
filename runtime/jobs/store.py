"""Jobs in the store: records and states in journals, a folder per job for its output.

    <home>/jobs/journal/*.jsonl       every job's record (what to run, who asked: JobRecord) and
                                      the states it moved to (JobStatus), one append-only
                                      journal per writing process (jobs/journal.py); readers
                                      merge them ("a state never goes back")
    <home>/jobs/<job_id>/             made by whoever takes the job out of the queue — a process
                                      job's claim is this ``mkdir`` (one claimant wins); a cluster
                                      job is claimed at birth (its record names its owner) and
                                      gets a folder only for its output or a cancel request
    <home>/jobs/<job_id>/stdout       the job's output, written by the job itself
    <home>/jobs/<job_id>/stderr
    <home>/jobs/<job_id>/cancel.json  a cancel request, for the supervisor
    <home>/jobs/by-key/<hash>         the job id a key was first submitted as

Jobs written by an earlier version have ``spec.json`` (the record) and ``state.json`` (the last
state: created by one claimant with ``link``, then replaced whole) in their folder; they are read
and written there, as before.

Folders are 0700 and files 0600: a job's output is nobody else's business. Everything here is
plain files so that any process — a runtime, ``ag jobs``, a resume after a crash — sees the
same facts without asking a live process.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

from .protocol import (
    CANCEL_DECODER,
    ENCODER,
    RECORD_DECODER,
    STATUS_DECODER,
    CancelRequest,
    JobRecord,
    JobSpec,
    JobState,
    JobStatus,
)

DIR_MODE = 0o700
FILE_MODE = 0o600


class UnknownJob(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} in this store")
        self.job_id = job_id


# Tags for job ids and temporary names: a generator of our own, seeded from the OS here and
# again in every forked child, that a user's random.seed() does not touch. Not ``secrets``: a
# tag needs to be unique, not unguessable, and a getrandom call per job is a system call per
# job (B10: ~8% of the trio thread's time). A clash is an error (mkdir, O_EXCL), never a share.
_rng = random.Random()
os.register_at_fork(after_in_child=_rng.seed)


def new_job_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"job-{stamp}-{_rng.getrandbits(32):08x}"


def _tmp_suffix() -> str:
    """For temporary names next to a file: this process and a random tag."""
    return f"{os.getpid()}-{_rng.getrandbits(24):06x}"


def _valid_id(job_id: str) -> bool:
    return (job_id.startswith("job-") and len(job_id) < 64 and "/" not in job_id
            and "\x00" not in job_id and job_id not in (".", ".."))


def write_atomic(path: str | Path, data: bytes, *, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` whole: a reader sees the old bytes or the new ones."""
    tmp = f"{path}.tmp-{_tmp_suffix()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


# -- process identity ----------------------------------------------------------------------------

def proc_start_time(pid: int, *, zombie_ok: bool = False) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if no such live process
    (a zombie counts as gone: it will never run again — unless ``zombie_ok``)."""
    if pid <= 0:
        return None
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # comm (field 2) may hold spaces and parentheses: split after its last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    if rest[0] in (b"Z", b"X") and not zombie_ok:
        return None
    return int(rest[19])  # field 22


def proc_alive(pid: int, start: int) -> bool:
    """Is the process that had ``pid`` and started at ``start`` still there?"""
    return bool(pid) and proc_start_time(pid) == start


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        if rest[0] not in (b"Z", b"X") and int(rest[2]) == pgid:
            out.append(int(name))
    return out


# -- the store -----------------------------------------------------------------------------------

class JobStore:
    """The ``jobs/`` folder of one store home.

    Paths are built as strings: a runtime starting a thousand jobs a second does this a lot."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.root = Path(home) / "jobs"
        self.by_key = self.root / "by-key"
        self._root = str(self.root)
        self._journal = None
        self._writer = None
        self._journaled: set[str] = set()

    @property
    def journal(self):
        """The journals of cluster jobs (``journal.JournalReader``), read when first needed."""
        if self._journal is None:
            from .journal import JournalReader

            self._journal = JournalReader(self._root)
        return self._journal

    @property
    def writer(self):
        """This process's journal (``journal.JournalWriter``), made on the first state it writes."""
        if self._writer is None:
            from .journal import JournalWriter

            self._writer = JournalWriter(self._root)
        return self._writer

    def _put(self, entries: list, *, now: bool = False, fsync: bool = False) -> None:
        self.writer.append(entries, fsync=fsync)

    def journaled(self, job_id: str) -> bool:
        """Is the job's record a journal line (not ``spec.json`` of an earlier version)?"""
        if job_id in self._journaled:
            return True
        if os.path.exists(self.path(job_id, "spec.json")):
            return False
        if self.journal.record(job_id) is None:
            return False
        self._journaled.add(job_id)
        return True

    def ensure(self) -> JobStore:
        for d in (self.root, self.by_key):
            try:
                os.mkdir(d, DIR_MODE)
            except FileExistsError:
                pass
        return self

    def path(self, job_id: str, name: str = "") -> str:
        if not _valid_id(job_id):
            raise UnknownJob(job_id)
        return f"{self._root}/{job_id}/{name}" if name else f"{self._root}/{job_id}"

    def dir(self, job_id: str) -> Path:
        return Path(self.path(job_id))

    def create(self, record: JobRecord) -> None:
        """A new job folder holding only its record: the job is QUEUED until someone claims it.

        The record is written in place (the folder is new and its name is not yet known to
        anyone); what makes a job exist for others is its id being handed out after this."""
        d = self.path(record.job_id)
        os.mkdir(d, DIR_MODE)
        fd = os.open(f"{d}/spec.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            os.write(fd, ENCODER.encode(record))
        finally:
            os.close(fd)

    def discard(self, job_id: str) -> None:
        """Remove a folder that was never handed out (it lost the race for its key)."""
        d = self.dir(job_id)
        for p in d.iterdir():
            p.unlink()
        d.rmdir()

    # -- keys

    @staticmethod
    def key_hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:40]

    def bind_key(self, key: str, job_id: str) -> str | None:
        """Bind ``key`` to ``job_id`` unless it is bound already; return the job id it was
        bound to before (then ``job_id`` must not run), or None (bound now).

        The file is written first and linked into place: ``link`` fails if the name exists,
        so of two processes submitting one key, exactly one wins, and the loser reads a
        complete job id, never an empty file."""
        path = self.by_key / self.key_hash(key)
        tmp = self.by_key / f".{job_id}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            os.write(fd, job_id.encode())
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            return None
        except FileExistsError:
            return path.read_text().strip()
        finally:
            os.unlink(tmp)

    def job_for_key(self, key: str) -> str | None:
        try:
            return (self.by_key / self.key_hash(key)).read_text().strip() or None
        except FileNotFoundError:
            return None

    def release_key(self, key: str, job_id: str) -> None:
        """Unbind ``key`` if it still names ``job_id`` (the next submit with it starts anew)."""
        path = self.by_key / self.key_hash(key)
        try:
            if path.read_text().strip() == job_id:
                os.rename(path, self.by_key / f".released-{job_id}")
        except FileNotFoundError:
            pass

    # -- state

    def claim(self, status: JobStatus) -> bool:
        """Take the one right to move a job out of QUEUED (start it, or cancel it unstarted):
        for a journaled job, by making its folder (``claim_folder``); for a job of an earlier
        version, by creating its ``state.json`` with ``status`` (``link`` fails if it exists,
        so exactly one claimant wins, and the file appears whole)."""
        if self.journaled(status.job_id):
            return self.claim_folder(status)
        d = self.path(status.job_id)
        tmp = f"{d}/.claim-{_tmp_suffix()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            os.write(fd, ENCODER.encode(status))
        finally:
            os.close(fd)
        try:
            os.link(tmp, f"{d}/state.json")
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def claim_folder(self, status: JobStatus, *, announced: bool = False) -> bool:
        """Claim a journaled job by making its folder: ``mkdir`` fails if it exists, so of two
        claimants (a job host and a cancel; two hosts after a resume) exactly one wins, and the
        folder is then the job's for its output.

        The claimant's state goes to its journal: a claim to start the job (QUEUED, naming the
        job host) *before* the ``mkdir`` (``announced``: the caller wrote it already), so a
        host that dies right after its claim leaves a job that reads LOST, never one claimed
        by nobody; a claim that ends it (CANCELLED) after, since an end beats every state."""
        from .journal import JournalEntry

        entry = [JournalEntry(status=status)]
        if not status.terminal and not announced:
            self._put(entry, now=True)
        try:
            os.mkdir(self.path(status.job_id), DIR_MODE)
        except FileExistsError:
            return False
        if status.terminal:
            self._put(entry, now=True)
        return True

    def claimed(self, job_id: str) -> bool:
        """Someone took the job out of the queue: its record names the runtime that claimed it
        at birth, or its folder exists (a journaled process job), or its ``state.json`` does
        (a job of an earlier version)."""
        if self.read_record(job_id).owner_pid:
            return True
        if self.journaled(job_id):
            return os.path.isdir(self.path(job_id))
        return os.path.exists(self.path(job_id, "state.json"))

    def read_record(self, job_id: str) -> JobRecord:
        try:
            with open(self.path(job_id, "spec.json"), "rb") as f:
                return RECORD_DECODER.decode(f.read())
        except FileNotFoundError:
            pass
        rec = self.journal.record(job_id)  # a cluster job: no folder, a journal record
        if rec is None:
            raise UnknownJob(job_id)
        return rec

    def read_spec(self, job_id: str) -> JobSpec:
        return self.read_record(job_id).spec

    def read_raw(self, job_id: str, *, catch_up: bool = True) -> JobStatus:
        """The last state written (a dead supervisor's RUNNING stays RUNNING); QUEUED from the
        record when nobody claimed the job yet. ``catch_up=False``: the journals as last read
        (the caller just caught up)."""
        if job_id in self._journaled:
            st = self.journal.status(job_id, catch_up=catch_up)
            if st is not None:
                return st
        try:
            with open(self.path(job_id, "state.json"), "rb") as f:
                return STATUS_DECODER.decode(f.read())
        except FileNotFoundError:
            pass
        if not os.path.exists(self.path(job_id, "spec.json")):
            st = self.journal.status(job_id)  # a journaled job: its states are journal lines
            if st is not None:
                self._journaled.add(job_id)
                return st
        st = self.read_record(job_id).queued()
        try:  # claimed between the two reads
            with open(self.path(job_id, "state.json"), "rb") as f:
                return STATUS_DECODER.decode(f.read())
        except FileNotFoundError:
            return st

    def read(self, job_id: str, *, catch_up: bool = True) -> JobStatus:
        """What is true now: a job whose supervisor is gone without a final word is LOST (so
        is one claimed by a runtime that died before its supervisor started)."""
        st = self.read_raw(job_id, catch_up=catch_up)
        if not self._orphaned(st):
            return st
        st = self.read_raw(job_id)  # it may have written its last state and exited meanwhile
        if self._orphaned(st):
            st.error = st.error or (
                "the job's supervisor is gone and did not record how the job ended"
                if st.state is JobState.RUNNING else
                "the job host that was to start it is gone" if st.supervisor_pid else
                "the runtime that was starting it died before it started")
            st.state = JobState.LOST
        return st

    @staticmethod
    def _orphaned(st: JobStatus) -> bool:
        if st.runner != "process":
            return False  # a cluster job's liveness is the scheduler's to tell, not a local pid's
        if st.state is JobState.RUNNING:
            return not proc_alive(st.supervisor_pid, st.supervisor_start)
        if st.state is JobState.QUEUED and st.supervisor_pid:  # handed to a job host, not started
            return not proc_alive(st.supervisor_pid, st.supervisor_start)
        if st.state is JobState.QUEUED and st.owner_pid:
            return not proc_alive(st.owner_pid, st.owner_start)
        return False

    def state_mtime(self, job_id: str, *, catch_up: bool = True) -> tuple[int, int]:
        """Changes whenever the job's state may have: for a journaled job, the number of its
        state lines read from the journals (after reading what is new, unless ``catch_up`` is
        False); else ``state.json``'s inode (every write is a new file) and mtime (two writes
        within one clock tick share an mtime, never an inode)."""
        if self.journaled(job_id):
            if catch_up:
                self.journal.catch_up()
            return (-1, self.journal.versions.get(job_id, 0))
        try:
            st = os.stat(self.path(job_id, "state.json"))
        except FileNotFoundError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def write(self, status: JobStatus, *, fsync: bool = False) -> None:
        """A state: a line in this process's journal, or ``state.json`` of an earlier version's job."""
        if self.journaled(status.job_id):
            from .journal import JournalEntry

            self._put([JournalEntry(status=status)], fsync=fsync)
        else:
            write_atomic(self.path(status.job_id, "state.json"), ENCODER.encode(status), fsync=fsync)

    def request_cancel(self, job_id: str, req: CancelRequest) -> None:
        try:
            write_atomic(self.path(job_id, "cancel.json"), ENCODER.encode(req))
        except FileNotFoundError:  # a journaled cluster job: its folder is made when needed
            try:
                os.mkdir(self.path(job_id), DIR_MODE)
            except FileExistsError:
                pass
            write_atomic(self.path(job_id, "cancel.json"), ENCODER.encode(req))

    def read_cancel(self, job_id: str) -> CancelRequest | None:
        try:
            with open(self.path(job_id, "cancel.json"), "rb") as f:
                return CANCEL_DECODER.decode(f.read())
        except (FileNotFoundError, ValueError):
            return None

    def ids(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        seen = set()
        for entry in os.scandir(self.root):
            if entry.name.startswith("job-") and entry.is_dir():
                seen.add(entry.name)
                yield entry.name
        for job_id in self.journal.ids():  # cluster jobs, most without a folder
            if job_id not in seen:
                yield job_id

    # -- output

    def output_path(self, job_id: str, stream: str = "stdout") -> Path:
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream must be stdout or stderr, got {stream!r}")
        return Path(self.path(job_id, stream))

    def tail(self, job_id: str, lines: int = 20, stream: str = "stdout") -> list[str]:
        """The last ``lines`` lines of a job's output (reads only the end of the file)."""
        return tail_file(self.output_path(job_id, stream), lines)


def tail_file(path: Path, lines: int, max_bytes: int = 1 << 20) -> list[str]:
    if lines <= 0:
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        size = os.fstat(fd).st_size
        chunk = 8192
        data = b""
        pos = size
        while pos > 0 and data.count(b"\n") <= lines and size - pos < max_bytes:
            step = min(chunk, pos)
            pos -= step
            data = os.pread(fd, step, pos) + data
            chunk *= 2
    finally:
        os.close(fd)
    text = data.decode("utf-8", "replace")
    out = text.split("\n")
    if out and out[-1] == "":
        out.pop()
    if pos > 0 and out:
        out = out[1:]  # the first line may be cut
    return out[-lines:]
