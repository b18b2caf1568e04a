"""The job host: one process per runtime that starts, watches and records every job it is given.

    python -m aethergraph.runtime.jobs.supervise --serve [--max-parallel N] [--owner PID:START] [--fsync]
        read jobs on stdin, one per line (the job's record, a tab, the store's ``jobs``
        folder); claim each for the runtime ``--owner`` and run at most N at once, each supervised to its end; ``close``: the runtime closes,
        claim the ones not started cancelled. First line out: ``host <pid> <start time>``.

The host is started by the runtime's ``ProcessRunner`` and leaves it at once (it forks, and the
process the runtime started exits): it is nobody's child but init's, in a session of its own,
so neither a Ctrl-C at the runtime's terminal nor the runtime's death reaches it, and a runtime
that closes does not wait for it. For each job it spawns the argv directly (no process between
them) — the job in a process group of its own, stdout/stderr appended to the job folder's files —
records pid + process start time (pid reuse guarded) and, when the job ends, its exit status,
signal, rusage and (on failure) the tail of its stderr, as lines in its own journal
(``journal.py``; one ``write`` per turn of its loop, before the runtime is told), fsync'd with
``--fsync``, which a runtime asks for when its durability is strict.
It is the only writer of a job's state once it runs, and it outlives the runtime that started
it: when the runtime's pipe closes it keeps supervising the jobs it has and exits when the last
one has ended, so a job that ends while no runtime is alive is still recorded.

Why one host and not a supervisor per job: a supervisor per job is two process creations per
job (a fork of a Python process, then the job), and the first costs more than the job itself
for short jobs (bench B9). The price: ``kill -9`` of the host makes all of its running jobs
LOST (they run on; how they end is not recorded) instead of one. Every running job's state
names the host (``supervisor_pid`` + ``supervisor_start``), so a reader tells a dead host from
a live one exactly as it told a dead supervisor.

One loop, no poller per job: the host sleeps in ``poll`` on its stdin and a wakeup pipe that
the signal handlers write to (``SIGCHLD``: reap with ``wait4``, which also gives the job's
rusage; ``SIGTERM``: look for cancel requests). Only the spawns run on a few threads (see
``_spawn``); everything else, state included, is the loop's. Timeouts and the SIGKILL after a grace period
come from a timer heap. It is a child subreaper: orphaned grandchildren of its jobs are
re-parented to it, so after a cancel it waits until nothing of the job's process group is left,
and reaps them.

Cancel: someone writes ``cancel.json`` in the job's folder and sends the host SIGTERM; the host
reads the cancel requests of its running jobs and sends SIGTERM to each asked job's process
group, SIGKILL after ``grace_s``, and records CANCELLED once nothing of the group is left. A
SIGTERM that finds no request changes nothing (it may be a late cancel of a job that just
ended). A timeout does the same from the timer heap and records FAILED.

The host tells the runtime when a job started or ended (``running <job_id>``, ``ended
<job_id>`` on stdout, one write per turn of the loop), so a runtime learns of an ended job at
once instead of at its next scan. Those lines are hints: the journals are the fact.

Files per job: the claim is the job's folder (``mkdir``; its QUEUED state naming this host is
journaled just before), then ``stdout`` and ``stderr`` — three new names per job, the least a
job with its output in two files can have (on this machine's ext4 each create costs more the
more files were made and deleted before, bench B9). States are journal lines: RUNNING (pid,
start time) and the final state; a job that has already ended when its start is noted (a
short one) gets only the final state, which has both. The record is not read from the store:
the runtime sends it on the job's line, after journaling it.
"""

from __future__ import annotations

import collections
import ctypes
import heapq
import itertools
import os
import select
import signal
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs

from .journal import JournalEntry
from .protocol import RECORD_DECODER, JobRecord, JobSpec, JobState, JobStatus, Rusage
from .store import JobStore, proc_start_time, tail_file

PR_SET_CHILD_SUBREAPER = 36
CLOSED = "the runtime closed before starting it"
SPAWNERS = 4
STDERR_TAIL_LINES = 10


def _set_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # not Linux: grandchildren go to init instead; the group kill still works
        return
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


_OUT_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def _spawn(argv: list[str], spec: JobSpec, job_dir: str, env, stdin: int) -> tuple[int, int]:
    """Start the job in a new process group, output appended to the job folder: its pid and
    process start time. Runs on a spawner thread.

    Through ``subprocess`` (a vfork underneath: no copy of the host's page tables), which lets
    go of the GIL while the child execs: under a vfork the parent waits until the child has
    exec'd, which on a busy machine is milliseconds, so several spawner threads keep the slots
    full where one thread would start jobs one after the other (``os.posix_spawn`` holds the
    GIL throughout). Signals the host handles are default again in the job (exec resets them);
    SIGPIPE and SIGXFSZ, which the host ignores, are restored."""
    out = os.open(f"{job_dir}/stdout", _OUT_FLAGS, 0o600)
    try:
        err = os.open(f"{job_dir}/stderr", _OUT_FLAGS, 0o600)
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, cwd=spec.cwd or None,
                                    env=env, process_group=0, close_fds=True, restore_signals=True)
        finally:
            os.close(err)
    finally:
        os.close(out)
    proc.returncode = 0  # reaped with wait4 by the host; keep Popen from trying
    return proc.pid, proc_start_time(proc.pid, zombie_ok=True) or 0


def _killpg(pgid: int, sig: int) -> bool:
    """Signal the group; False when nothing of it is left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _stderr_tail(job_dir: str) -> str:
    lines = tail_file(Path(job_dir, "stderr"), STDERR_TAIL_LINES)
    return "\n".join(line[-500:] for line in lines)


def _last_line(job_dir: str) -> str | None:
    for line in reversed(tail_file(Path(job_dir, "stdout"), 5)):
        if line.strip():
            return line[-1000:]
    return None


def _cannot_start(exc: OSError, argv0: str, cwd: str | None) -> str:
    if isinstance(exc, FileNotFoundError) and cwd and not os.path.isdir(cwd):
        what = f"no such directory {cwd!r}"
    elif isinstance(exc, FileNotFoundError):
        what = "no such program"
    else:
        what = exc.strerror or type(exc).__name__
    return f"cannot start {argv0!r}: {what}"


@attrs.define(frozen=True)
class _Unclaimed:
    """A spawner thread's word that the job was not started: its folder exists (someone
    else's claim, or a job of an earlier version), or the claim failed (``error``)."""

    error: Exception | None


@attrs.define(eq=False, kw_only=True)
class _Job:
    """A job the host started and has not recorded ended yet."""

    job_dir: str
    store: JobStore
    status: JobStatus
    spec: JobSpec
    pid: int = 0  # also its process group
    grace: float = 5.0
    cancel_by: str | None = None
    timed_out: bool = False
    stopping: bool = False  # SIGTERM sent to its group
    wstatus: int | None = None  # the leader's, once reaped
    rusage: Rusage | None = None
    drain_delay: float = 0.002  # grows while its group lingers after the leader ended
    done: bool = False
    legacy: bool = False  # a job of an earlier version: its states go to its state.json


class Host:
    """The host's state and its loop. Everything happens on its one thread; signals only wake
    ``poll`` (through the wakeup pipe)."""

    def __init__(self, *, fsync: bool = False, max_parallel: int = 0, owner: tuple[int, int] = (0, 0),
                 out_fd: int | None = 1) -> None:
        self.fsync = fsync
        self.owner = owner  # the runtime that hands us jobs (pid, start time)
        self.max_parallel = max_parallel  # 0: no limit
        self.out_fd = out_fd
        self.jobs: dict[int, _Job] = {}  # by pid of the job's leader
        # Jobs handed over and not started yet: the runtime sends a few more than fit so that
        # a slot is refilled here, the moment a job ends, not after a round trip.
        self.waiting: collections.deque[tuple[JobStore, JobRecord]] = collections.deque()
        self._fsync_due = False  # a final state is among the journal lines not yet written
        self._out: list[bytes] = []
        # Spawner threads: jobs to start in, (job, argv[0], pid and start | error) out.
        self.spawning = 0
        self._to_spawn: queue.SimpleQueue = queue.SimpleQueue()
        self._spawned: queue.SimpleQueue = queue.SimpleQueue()
        self._early: dict[int, tuple[int, object]] = {}
        self._devnull = -1
        self._wake_w = -1
        self.timers: list[tuple[float, int, _Job, str]] = []
        self._seq = itertools.count()
        self.stores: dict[str, JobStore] = {}
        self.me = os.getpid()
        self.me_start = proc_start_time(self.me) or 0
        self.listening = True

    # -- the loop -----------------------------------------------------------------------------

    def run(self, in_fd: int = 0) -> int:
        wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        # Handled, not ignored: exec resets them to default in the jobs. SIGINT cannot come
        # from a terminal (the host has none); it is not a reason for the host to end.
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: None)  # the wakeup pipe carries it
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        for i in range(SPAWNERS):
            threading.Thread(target=self._spawner, name=f"spawner-{i}", daemon=True).start()
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        poller.register(in_fd, select.POLLIN)
        buf = b""
        self._out.append(f"host {self.me} {self.me_start}\n".encode())
        self.flush()
        while self.listening or self.jobs or self.waiting or self.spawning:
            timeout = None
            if self.timers:
                timeout = max(0, int((self.timers[0][0] - time.monotonic()) * 1000) + 1)
            for fd, _ in poller.poll(timeout):
                if fd == wake_r:
                    if signal.SIGTERM in self._read_all(wake_r):
                        self.check_cancels()
                elif fd == in_fd:
                    data = os.read(in_fd, 65536)
                    if not data:  # the runtime closed or died: finish what we have
                        self.listening = False
                        poller.unregister(in_fd)
                        continue
                    *lines, buf = (buf + data).split(b"\n")
                    for line in lines:
                        line = line.strip()
                        if line == b"close":
                            self.close()
                        elif line:
                            self.receive(line)
            self.reap()
            self.collect_spawned()
            self.fire_timers()
            while self.waiting and self._free():
                self.start_many([self.waiting.popleft() for _ in range(min(self._free(), len(self.waiting)))])
            self.flush()
        return 0

    def _free(self) -> int:
        if not self.max_parallel:
            return len(self.waiting)
        return self.max_parallel - len(self.jobs) - self.spawning

    def receive(self, line: bytes) -> None:
        """One job handed over: its record, a tab, its store's ``jobs`` folder."""
        rec, _, root = line.partition(b"\t")
        try:
            record = RECORD_DECODER.decode(rec)
        except ValueError as exc:
            print(f"job host: a line it cannot read: {exc}", file=sys.stderr)
            return
        home = root.decode().rpartition("/")[0]
        store = self.stores.get(home)
        if store is None:
            store = self.stores[home] = JobStore(home)
        self.waiting.append((store, record))

    def close(self) -> None:
        """The runtime closes: the jobs it handed over that have not started never will."""
        while self.waiting:
            self.start(*self.waiting.popleft(), closing=True)

    @staticmethod
    def _read_all(fd: int) -> bytes:
        got = b""
        while True:
            try:
                chunk = os.read(fd, 512)
            except BlockingIOError:
                return got
            if not chunk:
                return got
            got += chunk

    def notify(self, what: str, job_id: str) -> None:
        if self.listening:
            self._out.append(f"{what} {job_id}\n".encode())

    def flush(self) -> None:
        """The journal lines of one turn of the loop, in one write each; then its hints, in
        one write (one wake-up of the runtime), so the runtime is told what is recorded."""
        fsync, self._fsync_due = self._fsync_due, False
        for store in self.stores.values():
            if store._writer is not None:
                store.writer.flush(fsync=fsync)
        if self._out and self.out_fd is not None:
            try:
                os.write(self.out_fd, b"".join(self._out))
            except OSError:  # nobody listens (the runtime is gone) or the pipe is full: only hints
                pass
        self._out.clear()

    def _after(self, delay: float, job: _Job, what: str) -> None:
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self._seq), job, what))

    def fire_timers(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, job, what = heapq.heappop(self.timers)
            if job.done:
                continue
            if what == "timeout":
                if job.wstatus is None and job.cancel_by is None and not job.stopping:
                    job.timed_out = True
                    self.stop(job)
            elif what == "kill":
                _killpg(job.pid, signal.SIGKILL)
            elif what == "drain":
                self.drain(job)

    # -- starting -----------------------------------------------------------------------------

    def _claiming(self, store: JobStore, record: JobRecord) -> JobStatus:
        status = record.queued()
        status.owner_pid, status.owner_start = self.owner
        status.supervisor_pid, status.supervisor_start = self.me, self.me_start
        return status

    def start_many(self, batch: list[tuple[JobStore, JobRecord]]) -> None:
        """Claim the jobs of ``batch`` and start them: their claims (QUEUED, naming this host)
        go to the journal in one write, then each job's folder is made — the claim itself —
        and the job spawned. A job whose folder exists is someone else's: cancelled before it
        started, or started by another runtime's host after a resume; the runtime is told to
        look. The host claims, not the runtime: the claim's file work stays off the runtime's
        thread."""
        claims = [(store, record, self._claiming(store, record)) for store, record in batch]
        for store, _, status in claims:
            store.writer.add([JournalEntry(status=status)])
        self.flush_journals()
        for store, record, status in claims:
            self._claim_and_start(store, record, status)

    def flush_journals(self) -> None:
        for store in self.stores.values():
            if store._writer is not None:
                store.writer.flush()

    def start(self, store: JobStore, record: JobRecord, *, closing: bool = False) -> None:
        """Claim one job and start it; ``closing``: claim it cancelled instead, its runtime
        closed before it started."""
        status = self._claiming(store, record)
        if closing:
            status.state, status.ended, status.cancelled_by = JobState.CANCELLED, time.time(), CLOSED
            status.error = "cancelled before it started"
            try:
                if store.claim_folder(status) or self._not_ours(store, record, status):
                    self.notify("ended", record.job_id)
            except Exception as exc:  # noqa: BLE001 - as in _claim_and_start
                self._could_not(store, record.job_id, exc)
            return
        store.writer.add([JournalEntry(status=status)])
        self.flush_journals()
        self._claim_and_start(store, record, status)

    def _claim_and_start(self, store: JobStore, record: JobRecord, status: JobStatus) -> None:
        """Hand the job to a spawner thread, which claims it (its folder) and starts it: the
        three new names of a job (folder, stdout, stderr) are made on the spawner threads, a
        few at once, not one after the other on this loop (each costs ~0.5 ms on this
        machine's ext4 under load, more than a job's whole share of the loop, bench B9)."""
        try:
            self._start(store.path(record.job_id), store, status, record.spec, claim=True)
        except Exception as exc:  # noqa: BLE001 - the job is not ours
            self._could_not(store, record.job_id, exc)

    @staticmethod
    def _could_not(store: JobStore, job_id: str, exc: Exception) -> None:
        """Record why, where the job's own errors go."""
        try:
            with open(f"{store.path(job_id)}/supervisor.err", "a") as f:
                f.write(f"{type(exc).__name__}: {exc}\n")
        except OSError:
            pass

    def _not_ours(self, store: JobStore, record: JobRecord | JobStatus, status: JobStatus) -> bool:
        """The job's folder exists. A job of an earlier version has its ``spec.json`` there and
        is claimed by ``state.json`` as it was then (True: ours to start); otherwise someone
        else claimed it and the runtime is told to look (False)."""
        if os.path.exists(store.path(record.job_id, "spec.json")):
            return store.claim(status)
        self.notify("ended", record.job_id)
        return False

    def _start(self, job_dir: str, store: JobStore, status: JobStatus, spec: JobSpec, *,
               claim: bool = False) -> None:
        """Hand the job to a spawner thread; ``claim``: it claims the job first (the folder is
        then new: no cancel request can be in it yet; one that comes during the spawn is read
        once the job runs)."""
        job = _Job(job_dir=job_dir, store=store, status=status, spec=spec, grace=spec.grace_s)
        argv = ["/bin/sh", "-c", spec.argv[0]] if spec.shell else spec.argv
        env = None  # the host's own environment, which is the runtime's
        if spec.env or not spec.inherit_env:
            env = dict(os.environ) if spec.inherit_env else {}
            env.update(spec.env)
        self.spawning += 1
        self._to_spawn.put((job, argv, env, claim))

    def _spawner(self) -> None:
        """A spawner thread: starts jobs, hands each result to the loop and wakes it."""
        while True:
            job, argv, env, claim = self._to_spawn.get()
            result: tuple[int, int] | BaseException | _Unclaimed
            try:
                claimed = not claim or job.store.claim_folder(job.status, announced=True)
            except Exception as exc:  # noqa: BLE001 - the job is not ours
                claimed, result = False, _Unclaimed(exc)
            else:
                result = _Unclaimed(None)
            if claimed:
                try:
                    result = _spawn(argv, job.spec, job.job_dir, env, self._devnull)
                except BaseException as exc:  # noqa: BLE001 - recorded as the job's failure
                    result = exc
            self._spawned.put((job, argv, env, result))
            try:
                os.write(self._wake_w, b"\0")
            except OSError:  # the pipe is full: the loop is awake anyway
                pass

    def collect_spawned(self) -> None:
        """The jobs the spawner threads started (or could not): record them RUNNING (FAILED)."""
        while True:
            try:
                job, argv, env, result = self._spawned.get_nowait()
            except queue.Empty:
                break
            self.spawning -= 1
            argv0 = argv[0]
            if isinstance(result, _Unclaimed):
                if result.error is not None:
                    self._could_not(job.store, job.status.job_id, result.error)
                elif self._not_ours(job.store, job.status, job.status):  # an earlier version's job
                    job.legacy = True
                    self.spawning += 1
                    self._to_spawn.put((job, argv, env, False))
                continue
            if isinstance(result, BaseException):
                error = (_cannot_start(result, argv0, job.spec.cwd) if isinstance(result, OSError)
                         else f"cannot start {argv0!r}: {type(result).__name__}: {result}")
                self.record(job, JobState.FAILED, error=error)
                continue
            pid, pid_start = result
            job.pid = pid
            self.jobs[pid] = job
            status = job.status
            status.state = JobState.RUNNING
            status.pid, status.pid_start = pid, pid_start
            status.started = time.time()
            ended = self._early.pop(pid, None)
            if ended is not None:
                # Reaped before its spawner thread told us its pid (a short job): its last
                # state is written now, so a RUNNING one that it would replace at once is not.
                self._leader_ended(job, *ended)
                continue
            self._write(job)
            self.notify("running", status.job_id)
            req = job.store.read_cancel(status.job_id)  # asked while we were starting it
            if req is not None:
                self.cancel(job, req.by, req.grace_s)
            elif job.spec.timeout_s is not None:
                self._after(job.spec.timeout_s, job, "timeout")
        if not self.spawning:
            self._early.clear()

    # -- cancelling ---------------------------------------------------------------------------

    def check_cancels(self) -> None:
        """A SIGTERM: which of our jobs has a cancel request? (One not started yet was claimed
        by the canceller: its folder exists, and ``start`` finds it not ours.)"""
        for store, record in list(self.waiting):
            if os.path.isdir(store.path(record.job_id)):
                self.waiting.remove((store, record))
                self.start(store, record)
        for job in list(self.jobs.values()):
            if job.cancel_by is None and not job.done:
                req = job.store.read_cancel(job.status.job_id)
                if req is not None:
                    self.cancel(job, req.by, req.grace_s)

    def cancel(self, job: _Job, by: str, grace_s: float) -> None:
        job.cancel_by, job.grace = by, grace_s
        if not job.stopping:
            self.stop(job)

    def stop(self, job: _Job) -> None:
        """SIGTERM to the job's group, SIGKILL after its grace."""
        job.stopping = True
        _killpg(job.pid, signal.SIGTERM)
        if job.grace > 0:
            self._after(job.grace, job, "kill")
        else:
            _killpg(job.pid, signal.SIGKILL)

    # -- ending -------------------------------------------------------------------------------

    def reap(self) -> None:
        """Every child that ended: a job's leader (then see to the rest of its group) or an
        orphaned grandchild re-parented here (nothing to record)."""
        while True:
            try:
                pid, wstatus, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.get(pid)
            if job is None:
                if self.spawning:  # perhaps a job whose spawner thread has not reported yet
                    self._early[pid] = (wstatus, ru)
                continue  # else an orphaned grandchild: nothing to record
            if job.wstatus is None:
                self._leader_ended(job, wstatus, ru)

    def _leader_ended(self, job: _Job, wstatus: int, ru) -> None:
        job.wstatus = wstatus
        job.rusage = Rusage(user_s=ru.ru_utime, system_s=ru.ru_stime, max_rss_kb=ru.ru_maxrss)
        # The job is its whole process group: nothing of it stays behind. Leftovers of a job
        # that ended by itself get SIGTERM and the usual grace; a stopping job's group is
        # already being killed as asked.
        if _killpg(job.pid, 0):
            if not job.stopping:
                self.stop(job)
            self._after(job.drain_delay, job, "drain")
        else:
            self.finish(job)

    def drain(self, job: _Job) -> None:
        """Finish the job once nothing of its group is left (the loop reaps re-parented
        grandchildren before the timers fire); else look again a little later."""
        if _killpg(job.pid, 0):
            job.drain_delay = min(job.drain_delay * 2, 0.05)
            self._after(job.drain_delay, job, "drain")
        else:
            self.finish(job)

    def finish(self, job: _Job) -> None:
        self.jobs.pop(job.pid, None)
        code = os.waitstatus_to_exitcode(job.wstatus) if job.wstatus is not None else None
        exit_code, sig = (code, None) if code is None or code >= 0 else (None, -code)
        fields = {"exit_code": exit_code, "signal": sig, "rusage": job.rusage}
        if job.cancel_by is not None:
            self.record(job, JobState.CANCELLED, cancelled_by=job.cancel_by,
                        error=f"cancelled by {job.cancel_by or 'request'}", **fields)
        elif job.timed_out:
            self.record(job, JobState.FAILED, timed_out=True,
                        error=f"timed out after {job.spec.timeout_s:g}s and was killed", **fields)
        elif code == 0:
            self.record(job, JobState.SUCCEEDED, result=_last_line(job.job_dir), **fields)
        else:
            how = f"exit code {code}" if sig is None else f"killed by {signal.Signals(sig).name}"
            if code is None:
                how = "exit status unknown"
            tail = _stderr_tail(job.job_dir)
            self.record(job, JobState.FAILED, error=how + (f"; stderr ends with:\n{tail}" if tail else ""),
                        **fields)

    def record(self, job: _Job, state: JobState, **fields) -> None:
        """The job's last state, whole; the runtime hears of it at once."""
        job.done = True
        status = job.status
        status.state = state
        status.ended = time.time()
        for k, v in fields.items():
            setattr(status, k, v)
        self._write(job, final=True)
        self.notify("ended", status.job_id)

    def _write(self, job: _Job, *, final: bool = False) -> None:
        """The job's state: a line for the journal's next write (``flush``, this turn), a
        final one fsync'd with ``--fsync``."""
        if job.legacy:
            job.store.write(job.status, fsync=final and self.fsync)
            return
        job.store.writer.add([JournalEntry(status=job.status)])
        self._fsync_due = self._fsync_due or (final and self.fsync)


def serve(*, fsync: bool = False, max_parallel: int = 0, owner: tuple[int, int] = (0, 0)) -> int:
    """The job host; ends once its stdin is closed and its last job has ended."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the runtime (until the loop handles it)
    # Leave the runtime's process tree: a runtime that closes neither waits for the host nor
    # keeps it as a zombie; the host is init's (or the nearest subreaper's) from here on.
    if os.fork():
        os._exit(0)
    _set_subreaper()
    os.set_blocking(1, False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    in_fd = os.dup(0)
    os.dup2(devnull, 0)  # nothing the host starts reads the runtime's pipe
    os.close(devnull)
    return Host(fsync=fsync, max_parallel=max_parallel, owner=owner).run(in_fd)


def main(argv: list[str]) -> int:
    usage = "usage: python -m aethergraph.runtime.jobs.supervise --serve [--max-parallel N] [--owner PID:START] [--fsync]"
    opts = {"--serve": False, "--fsync": False, "--max-parallel": "0", "--owner": "0:0"}
    args = iter(argv)
    try:
        for a in args:
            if a not in opts:
                raise ValueError(a)
            opts[a] = True if isinstance(opts[a], bool) else next(args)
        max_parallel = int(opts["--max-parallel"])
        pid, _, start = str(opts["--owner"]).partition(":")
        owner = (int(pid), int(start))
    except (ValueError, StopIteration):
        print(usage, file=sys.stderr)
        return 2
    if not opts["--serve"]:
        print(usage, file=sys.stderr)
        return 2
    return serve(fsync=bool(opts["--fsync"]), max_parallel=max_parallel, owner=owner)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
