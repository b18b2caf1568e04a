"""The runtime side of process jobs: a queue, one watcher, waits that cost nothing while parked.

Per runtime there is one job host process (``supervise.py``) and three tasks, whatever the
number of jobs: the *dispatcher* hands queued jobs to the host, keeping it up to
``2 × max_parallel`` ahead — the host claims each as it starts it (the claim names the host),
runs ``max_parallel`` at once and starts the next the moment one ends, without waiting for
this runtime to hear of it; the *reader* takes the host's hints (``running <id>``, ``ended <id>``) so an ended job is seen at
once, and notices the host's death (its jobs are LOST); the *scanner* wakes on the runtime's
timer, reads what is new in the store's journals and looks at the jobs this runtime watches
(those it started and those it reattached to after a resume), and notices a host that died.
Each sighting reads the job's state from the journals — the only source of truth — records a
``job_state`` event when the state moved, and cancels the cancel scopes of the tasks waiting for
that job. Ten thousand queued jobs are ten thousand entries in a deque, not ten thousand tasks.

A job's record is a line in this runtime's journal (``journal.py``), written before the job is
handed to the host, which gets the record on the job's line (it reads no file to start it);
the host journals its states. So a job costs the store three new names — its folder (the
host's claim), ``stdout``, ``stderr`` — and no rename or delete.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import sys
from typing import Any

import trio

from .base import Job, JobRunner, JobsClosed, JobWaitTimeout
from .control import kill_orphan, request_cancel
from .journal import JournaledStore
from .protocol import ENCODER, JobRecord, JobSpec, JobSpecError, JobState, JobStatus
from .store import UnknownJob, proc_alive

log = logging.getLogger("aethergraph.jobs")


CLOSED = "the runtime closed before starting it"
# -I: the job host sees neither PYTHONPATH nor the user's cwd, only the installed package.
_SERVE = "import sys; from aethergraph.runtime.jobs.supervise import main; sys.exit(main(sys.argv[1:]))"


class ProcessRunner(JobRunner):
    """Jobs of one runtime. Built by ``aethergraph.jobs.ProcessJobs`` when the runtime opens."""

    RUNNER = "process"
    SCAN_INTERVAL_S = 0.25

    def __init__(self, rt: Any, *, max_parallel: int = 4, scan_interval_s: float | None = None) -> None:
        if not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(f"max_parallel must be a whole number >= 1, got {max_parallel!r}")
        super().__init__(rt)
        # Records are gathered and written by the dispatcher, once per burst of submits, before
        # the host has the jobs (a keyed one at once: its key is bound after its record).
        self.store = JournaledStore(rt.layout.home).ensure()
        self.store.on_pending = lambda: None
        self._jobs_line = b"\t" + self.store._root.encode() + b"\n"
        self.max_parallel = max_parallel
        self.scan_interval_s = scan_interval_s or self.SCAN_INTERVAL_S
        self.queue: collections.deque[str] = collections.deque()
        self.active: set[str] = set()  # started by this runtime, not yet seen ending
        self.watched: set[str] = set()  # every job not yet terminal that this runtime follows
        self._dispatch = trio.Event()
        self._server: trio.Process | None = None
        self._host = (0, 0)  # the job host's pid and start time (it names itself in its claims)
        self._scans = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._dispatcher, name="jobs dispatcher")
            nursery.start_soon(self._scanner, name="jobs scanner")
            task_status.started()

    async def close(self) -> None:
        """Let the job host go (running jobs live on under it; it exits after the last one).
        Jobs still queued would never start: they are recorded cancelled, saying why — here
        for those never handed over, by the host (``close``) for those it had not started."""
        self._closed = True
        self.store.writer.flush()  # the records of jobs never handed over
        for job_id in self.queue:
            job = self.jobs.get(job_id)
            if job is not None and not job.terminal:
                try:
                    request_cancel(self.store, job_id, by=CLOSED)
                except Exception:
                    log.exception("job %s: cannot record it cancelled", job_id)
        self.queue.clear()
        server, self._server = self._server, None
        if server is None:
            return
        with trio.move_on_after(5):
            try:
                await server.stdin.send_all(b"close\n")
                told = True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                told = False  # the host is gone: what it claimed reads LOST, the rest QUEUED
            await server.stdin.aclose()
            await server.wait()  # the process we started; the host left it at once
            # The host records the jobs it had not started; we return once they are.
            pending = [self.jobs[j] for j in self.active if j in self.jobs]
            while told and any(self.refresh(job, force=True).state is JobState.QUEUED for job in pending):
                await trio.sleep(0.005)
        self.store.writer.close()

    async def _start_server(self) -> trio.Process:
        """Start a job host; returns once it said who it is (its pid and start time)."""
        # -I and an explicit path: a `runtime` package in the user's working directory or on
        # PYTHONPATH must not stand in for ours.
        argv = [sys.executable, "-I", "-c", _SERVE, "--serve", "--max-parallel", str(self.max_parallel),
                "--owner", f"{self._pid}:{self._pid_start}"]
        if getattr(self.rt, "durability", "") == "strict":
            argv.append("--fsync")  # a job's last state survives a machine crash too
        proc = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )
        buf = b""
        while b"\n" not in buf:
            chunk = await proc.stdout.receive_some()
            if not chunk:
                raise JobsClosed("the job host did not start")
            buf += chunk
        hello, _, rest = buf.partition(b"\n")
        _, pid, start = hello.decode().split()
        self._host = (int(pid), int(start))
        self._nursery.start_soon(self._reader, proc, rest, name="jobs reader")
        return proc

    # -- submit, adopt ------------------------------------------------------------------------

    def submit(self, spec: Any, *, key: str | None = None, run_id: str = "", node: str = "") -> str:
        """Accept a job (QUEUED) and return its id; with ``key``, the job first submitted
        with that key, by any process, is returned instead of a new one."""
        if self._closed:
            raise JobsClosed("the runtime's jobs are closed")
        spec = JobSpec.coerce(spec)
        if spec.fn or spec.resources or spec.priority:
            raise JobSpecError("job spec: fn, resources and priority need a cluster runner "
                               "(DaskJobs); ProcessJobs runs argv on this machine")
        job, new = self._new(spec, key=key, run_id=run_id, node=node)
        if new:
            # No state line yet (its record may still be gathered): nothing to read until one comes.
            job.mtime = self.store.state_mtime(job.job_id, catch_up=False)
            self.watched.add(job.job_id)
            self.queue.append(job.job_id)
            self._dispatch.set()
        return job.job_id

    def adopt(self, job_id: str) -> Job:
        """Follow a job this runtime did not submit (or submitted before a crash): read what
        the store knows, queue it if it never started, watch it if it runs."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job
        mtime = self.store.state_mtime(job_id)  # before the read: a later change shows as new
        status = self.store.read(job_id)
        grace = self.store.read_spec(job_id).grace_s
        job = self.jobs[job_id] = Job(job_id, status, grace_s=grace, mtime=mtime)
        if not job.terminal:
            self.watched.add(job_id)
            if status.state is JobState.QUEUED and not self.store.claimed(job_id):
                self.queue.append(job_id)
                self._dispatch.set()
        self._emit_state(job, note="reattached")
        return job

    # -- reading state ------------------------------------------------------------------------

    def refresh(self, job: Job, *, force: bool = False, catch_up: bool = True) -> JobStatus:
        """Read the job's state from the store; record and wake on a change.

        A state the journals have not replaced since the last read is not read again. What
        can change without it is only a host's (or owner's) death, which makes the job LOST:
        the reader and the scanner, who notice deaths, pass ``force``. ``catch_up=False``: the
        caller has just read what is new in the journals (once for many jobs)."""
        if job.terminal and job.status.state is not JobState.LOST:  # LOST may still be cancelled
            return job.status
        try:
            mtime = self.store.state_mtime(job.job_id, catch_up=catch_up or force)
            if mtime == job.mtime and not force:
                return job.status
            job.mtime = mtime
            new = self.store.read(job.job_id, catch_up=False)
        except (UnknownJob, ValueError) as exc:
            log.warning("job %s: cannot read its state: %s", job.job_id, exc)
            return job.status
        if new.state is not job.status.state:
            job.status = new
            self._emit_state(job)
            if new.terminal:
                self._ended(job)
        else:
            job.status = new
        return job.status

    def _ended(self, job: Job) -> None:
        self.watched.discard(job.job_id)
        if job.job_id in self.active:
            self.active.discard(job.job_id)
            self._dispatch.set()
        if job.release_key_on_end and job.status.key:
            self.store.release_key(job.status.key, job.job_id)
        self._wake_waiters(job)

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, job_id: str, *, grace_s: float | None = None, by: str = "") -> JobStatus:
        """SIGTERM to the job's process group, SIGKILL after ``grace_s`` (the job's own
        ``grace_s`` by default); returns once the job is recorded ended."""
        job = self.known(job_id)
        if job.terminal and job.status.state is not JobState.LOST:
            return job.status
        grace = job.grace_s if grace_s is None else grace_s
        self.store.writer.flush()  # its record, if still gathered: the cancel reads the store
        done = request_cancel(self.store, job_id, grace_s=grace, by=by)
        if done is not None:  # never started: the dispatcher skips it when its turn comes
            return self.refresh(job)
        # The supervisor ends the job; wait for its word, and take over if it dies meanwhile.
        with trio.move_on_after(grace + 5):
            while not self.refresh(job).terminal:
                await self._park(job, trio.current_time() + self.scan_interval_s)
        if not job.terminal and job.status.state is JobState.LOST:
            await trio.to_thread.run_sync(kill_orphan, self.store, job.status, grace_s=grace, by=by)
            self.refresh(job)
        return job.status

    # -- the three tasks ----------------------------------------------------------------------

    async def _dispatcher(self) -> None:
        # The host gets up to twice max_parallel jobs: it runs max_parallel and starts the next
        # the moment one ends, without waiting for this runtime to hear of the end.
        while True:
            await self._dispatch.wait()
            self._dispatch = trio.Event()
            # The records of this burst of submits, in one write: before the host has the jobs,
            # and so that other processes (ag jobs, a resume) see queued jobs too.
            self.store.writer.flush()
            if not self.queue or len(self.active) >= 2 * self.max_parallel:
                continue
            if self._server is None:
                self._server = await self._start_server()
            lines = []
            while self.queue and len(self.active) < 2 * self.max_parallel:
                job_id = self.queue.popleft()
                job = self.jobs[job_id]
                if job.terminal:  # cancelled while queued
                    continue
                # The host claims it (naming itself: a cancel signals it, its death makes the
                # job LOST) when it starts it; until then a cancel claims it CANCELLED instead.
                self.active.add(job_id)
                lines.append(ENCODER.encode(self._record(job)) + self._jobs_line)
            if lines:
                self.store.writer.flush()  # records gathered while the host started
                try:
                    await self._server.stdin.send_all(b"".join(lines))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    # The host died: the reader, seeing its end, takes back what it never
                    # claimed (and its claimed jobs read LOST); the next dispatch starts a host.
                    log.warning("the job host is gone; the next jobs go to a new one")
                    self._server = None

    def _record(self, job: Job) -> JobRecord:
        """What the host needs to start the job: its record, as journaled at the submit."""
        if job.spec is None:  # adopted after a resume
            return self.store.read_record(job.job_id)
        st = job.status
        return JobRecord(job_id=st.job_id, spec=job.spec, runner=st.runner, run_id=st.run_id,
                         node=st.node, key=st.key, submitted=st.submitted)

    async def _reader(self, proc: trio.Process, buf: bytes = b"") -> None:
        async for chunk in proc.stdout:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            self.store.journal.catch_up()  # the host wrote its journal before these hints
            for line in lines:
                _, _, job_id = line.decode(errors="replace").partition(" ")
                job = self.jobs.get(job_id)
                if job is not None:
                    self.refresh(job, catch_up=False)
        # The host closes its end only when it exits, and it exits only after we closed ours:
        # if we did not, it died (kill -9). Every job it had reads LOST now (their states name
        # it): running ones run on, with nobody to record their end.
        if self._closed:
            return
        if self._server is proc:
            self._server = None
        log.warning("the job host is gone; its jobs are lost")
        for job_id in list(self.active):
            job = self.jobs.get(job_id)
            if job is not None and self.refresh(job, force=True).state is JobState.QUEUED \
                    and not self.store.claimed(job_id):  # never taken: the next host gets it
                self.active.discard(job_id)
                self.queue.appendleft(job_id)
        self._dispatch.set()

    async def _scanner(self) -> None:
        store = self.store
        while True:
            await self.rt.timer.sleep(self.scan_interval_s)
            # Jobs still in our own queue change only if another process cancels them: they
            # are looked at every 8th scan, not every scan (a stat each adds up at 10,000).
            self._scans += 1
            skip = set(self.queue) if self._scans % 8 and len(self.queue) > 64 else ()
            alive: dict[tuple[int, int], bool] = {}
            if self.watched:
                store.writer.flush()  # records gathered since the last dispatch
                store.journal.catch_up()
            for job_id in list(self.watched):
                if job_id in skip:
                    continue
                job = self.jobs.get(job_id)
                if job is None or job.terminal:
                    self.watched.discard(job_id)
                    continue
                st = job.status
                host = (st.supervisor_pid, st.supervisor_start)
                if host[0] and host not in alive:
                    alive[host] = proc_alive(*host)
                dead = bool(host[0]) and not alive[host]
                if dead or store.state_mtime(job_id, catch_up=False) != job.mtime:
                    self.refresh(job, force=dead, catch_up=False)


__all__ = ["JobWaitTimeout", "JobsClosed", "ProcessRunner"]
