"""The runtime side of process jobs: a queue, one watcher, waits that cost nothing while parked.

Per runtime there are three tasks, whatever the number of jobs: the *dispatcher* starts queued
jobs while fewer than ``max_parallel`` run; the *reader* takes the fork server's hints
(``running <id>``, ``ended <id>``) so an ended job is seen at once; the *scanner* wakes on the
runtime's timer and stats ``state.json`` of the jobs this runtime watches (those it started and
those it reattached to after a resume), and notices a supervisor that died. Each sighting reads
``state.json`` — the only source of truth — records a ``job_state`` event when the state moved,
and cancels the cancel scopes of the tasks waiting for that job. Ten thousand queued jobs are
ten thousand entries in a deque, not ten thousand tasks.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import msgspec
import trio

from .. import events as ev
from .control import kill_orphan, request_cancel
from .protocol import JobRecord, JobSpec, JobSpecError, JobState, JobStatus
from .store import JobStore, UnknownJob, new_job_id, proc_alive, proc_start_time

log = logging.getLogger("aethergraph.jobs")


# -I: the fork server sees neither PYTHONPATH nor the user's cwd, only the installed package.
_SERVE = "import sys; from aethergraph.runtime.jobs.supervise import main; sys.exit(main(sys.argv[1:]))"


class JobWaitTimeout(TimeoutError):
    """``wait(job_id, timeout_s=...)`` ran out of time (the job was cancelled unless detached)."""


class JobsClosed(RuntimeError):
    pass


@attrs.define(eq=False)
class _Job:
    job_id: str
    status: JobStatus
    grace_s: float = 5.0
    mtime: tuple[int, int] = (0, 0)
    # Cancel scopes of the tasks parked in wait(): cancelled when the job ends.
    waiters: set = attrs.field(factory=set)
    # Hands of a cancel that wait() issued because its caller was cancelled.
    release_key_on_end: bool = False
    # What was submitted (runners that act on the spec after the submit: DaskRunner).
    spec: Any = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal


class ProcessRunner:
    """Jobs of one runtime. Built by ``aethergraph.jobs.ProcessJobs`` when the runtime opens."""

    SCAN_INTERVAL_S = 0.25

    def __init__(self, rt: Any, *, max_parallel: int = 4, scan_interval_s: float | None = None) -> None:
        if not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(f"max_parallel must be a whole number >= 1, got {max_parallel!r}")
        self.rt = rt
        self.max_parallel = max_parallel
        self.scan_interval_s = scan_interval_s or self.SCAN_INTERVAL_S
        self.store = JobStore(rt.layout.home).ensure()
        self.jobs: dict[str, _Job] = {}
        self.queue: collections.deque[str] = collections.deque()
        self.active: set[str] = set()  # started by this runtime, not yet seen ending
        self.watched: set[str] = set()  # every job not yet terminal that this runtime follows
        self._nursery: trio.Nursery | None = None
        self._dispatch = trio.Event()
        self._server: trio.Process | None = None
        self._closed = False
        self._pid = os.getpid()
        self._pid_start = proc_start_time(self._pid) or 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._dispatcher, name="jobs dispatcher")
            nursery.start_soon(self._scanner, name="jobs scanner")
            task_status.started()

    async def close(self) -> None:
        """Stop the fork server (running jobs live on: their supervisors are on their own).
        Jobs still queued here would never start: they are recorded cancelled, saying why."""
        self._closed = True
        for job_id in self.queue:
            job = self.jobs.get(job_id)
            if job is not None and not job.terminal:
                try:
                    request_cancel(self.store, job_id, by="the runtime closed before starting it")
                except Exception:
                    log.exception("job %s: cannot record it cancelled", job_id)
        self.queue.clear()
        server, self._server = self._server, None
        if server is not None:
            with trio.move_on_after(5):
                await server.stdin.aclose()  # the server ends at EOF; its supervisors live on
                await server.wait()
            if server.returncode is None:
                server.kill()
                await server.wait()

    async def _start_server(self) -> trio.Process:
        # -I and an explicit path: a `runtime` package in the user's working directory or on
        # PYTHONPATH must not stand in for ours.
        argv = [sys.executable, "-I", "-c", _SERVE, "--serve"]
        if getattr(self.rt, "durability", "") == "strict":
            argv.append("--fsync")  # a job's last state survives a machine crash too
        proc = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )
        self._nursery.start_soon(self._reader, proc, name="jobs reader")
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
        if key:
            known = self.store.job_for_key(key)
            if known is not None:
                return self.adopt(known).job_id
        job_id = new_job_id()
        record = JobRecord(job_id=job_id, spec=spec, run_id=run_id, node=node, key=key or "",
                           submitted=time.time())
        status = record.queued()
        self.store.create(record)
        if key:
            prior = self.store.bind_key(key, job_id)
            if prior is not None:  # another process won the race for this key
                self.store.discard(job_id)
                return self.adopt(prior).job_id
        job = self.jobs[job_id] = _Job(job_id, status, grace_s=spec.grace_s)
        self.watched.add(job_id)
        self.queue.append(job_id)
        self._emit(job, ev.JobSubmitted, runner="process", name=spec.name, key=key or "",
                   argv=tuple(spec.argv))
        self._dispatch.set()
        return job_id

    def adopt(self, job_id: str) -> _Job:
        """Follow a job this runtime did not submit (or submitted before a crash): read what
        the store knows, queue it if it never started, watch it if it runs."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job
        status = self.store.read(job_id)
        grace = self.store.read_spec(job_id).grace_s
        job = self.jobs[job_id] = _Job(job_id, status, grace_s=grace,
                                       mtime=self.store.state_mtime(job_id))
        if not job.terminal:
            self.watched.add(job_id)
            if status.state is JobState.QUEUED and not self.store.claimed(job_id):
                self.queue.append(job_id)
                self._dispatch.set()
        self._emit_state(job, note="reattached")
        return job

    def known(self, job_id: str) -> _Job:
        try:
            return self.jobs.get(job_id) or self.adopt(job_id)
        except UnknownJob:
            raise
        except (OSError, ValueError) as exc:
            raise UnknownJob(job_id) from exc

    # -- reading state ------------------------------------------------------------------------

    def refresh(self, job: _Job) -> JobStatus:
        """Read the job's state from the store; record and wake on a change."""
        if job.terminal and job.status.state is not JobState.LOST:  # LOST may still be cancelled
            return job.status
        try:
            job.mtime = self.store.state_mtime(job.job_id)
            new = self.store.read(job.job_id)
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

    def _ended(self, job: _Job) -> None:
        self.watched.discard(job.job_id)
        if job.job_id in self.active:
            self.active.discard(job.job_id)
            self._dispatch.set()
        if job.release_key_on_end and job.status.key:
            self.store.release_key(job.status.key, job.job_id)
        for scope in job.waiters:
            scope.cancel()
        job.waiters.clear()

    def status(self, job_id: str) -> JobStatus:
        return self.refresh(self.known(job_id))

    # -- waiting and cancelling ---------------------------------------------------------------

    async def wait(self, job_id: str, *, timeout_s: float | None = None, detach: bool = False,
                   cancelled_by: str = "") -> JobStatus:
        """Until the job is terminal. If the caller is cancelled (its node cancelled, retried,
        timed out; the run cancelled; Ctrl-C) the job is cancelled too and gives up its key,
        unless ``detach``; likewise when ``timeout_s`` passes (``JobWaitTimeout``)."""
        job = self.known(job_id)
        deadline = math.inf if timeout_s is None else trio.current_time() + timeout_s
        try:
            while not self.refresh(job).terminal:
                if trio.current_time() >= deadline:
                    if not detach:
                        await self.cancel(job_id, by=cancelled_by or "wait timeout")
                    raise JobWaitTimeout(f"job {job_id} did not end within {timeout_s:g}s"
                                         + ("" if detach else "; it was cancelled"))
                with trio.CancelScope() as scope:
                    job.waiters.add(scope)
                    try:
                        if deadline == math.inf:
                            await trio.sleep_forever()
                        else:
                            await self.rt.timer.sleep_until(deadline)
                    finally:
                        job.waiters.discard(scope)
            return job.status
        except trio.Cancelled:
            if not detach and not job.terminal:
                job.release_key_on_end = True
                with trio.CancelScope(shield=True):
                    await self.cancel(job_id, by=cancelled_by or "the waiting node was cancelled")
            raise

    async def cancel(self, job_id: str, *, grace_s: float | None = None, by: str = "") -> JobStatus:
        """SIGTERM to the job's process group, SIGKILL after ``grace_s`` (the job's own
        ``grace_s`` by default); returns once the job is recorded ended."""
        job = self.known(job_id)
        if job.terminal and job.status.state is not JobState.LOST:
            return job.status
        grace = job.grace_s if grace_s is None else grace_s
        done = request_cancel(self.store, job_id, grace_s=grace, by=by)
        if done is not None:  # never started: the dispatcher skips it when its turn comes
            return self.refresh(job)
        # The supervisor ends the job; wait for its word, and take over if it dies meanwhile.
        with trio.move_on_after(grace + 5):
            while not self.refresh(job).terminal:
                with trio.CancelScope() as scope:
                    job.waiters.add(scope)
                    try:
                        await self.rt.timer.sleep(self.scan_interval_s)
                    finally:
                        job.waiters.discard(scope)
        if not job.terminal and job.status.state is JobState.LOST:
            await trio.to_thread.run_sync(kill_orphan, self.store, job.status, grace_s=grace, by=by)
            self.refresh(job)
        return job.status

    # -- the three tasks ----------------------------------------------------------------------

    async def _dispatcher(self) -> None:
        while True:
            await self._dispatch.wait()
            self._dispatch = trio.Event()
            lines = []
            while self.queue and len(self.active) < self.max_parallel:
                job_id = self.queue.popleft()
                job = self.jobs[job_id]
                if job.terminal:  # cancelled while queued
                    continue
                claim = msgspec.structs.replace(job.status, owner_pid=self._pid, owner_start=self._pid_start)
                if not self.store.claim(claim):  # someone else started or cancelled it
                    self.refresh(job)
                    continue
                job.status = claim
                self.active.add(job_id)
                lines.append(f"{self.store.path(job_id)}\n".encode())
            if lines:
                await self._send(b"".join(lines))

    async def _send(self, data: bytes) -> None:
        for attempt in (1, 2):
            if self._server is None:
                self._server = await self._start_server()
            try:
                await self._server.stdin.send_all(data)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.warning("the jobs fork server is gone; starting another")
                self._server = None
        raise JobsClosed("cannot start the jobs fork server")

    async def _reader(self, proc: trio.Process) -> None:
        buf = b""
        async for chunk in proc.stdout:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                _, _, job_id = line.decode(errors="replace").partition(" ")
                job = self.jobs.get(job_id)
                if job is not None:
                    self.refresh(job)

    async def _scanner(self) -> None:
        store = self.store
        while True:
            await self.rt.timer.sleep(self.scan_interval_s)
            for job_id in list(self.watched):
                job = self.jobs.get(job_id)
                if job is None or job.terminal:
                    self.watched.discard(job_id)
                    continue
                st = job.status
                if store.state_mtime(job_id) != job.mtime or (
                    st.state is JobState.RUNNING
                    and not proc_alive(st.supervisor_pid, st.supervisor_start)
                ):
                    self.refresh(job)

    # -- events -------------------------------------------------------------------------------

    def _emit(self, job: _Job, cls: type, **fields: Any) -> None:
        """Record a fact about ``job`` in the log of the run it belongs to, if that run is live
        here (a job outlives its run; its folder stays the record)."""
        run = self.rt.runs.get(job.status.run_id) if job.status.run_id else None
        if run is not None:
            run.emit(cls, node=job.status.node, job_id=job.job_id, **fields)

    def _emit_state(self, job: _Job, note: str = "") -> None:
        st = job.status
        self._emit(job, ev.JobStateChanged, state=st.state.value, exit_code=st.exit_code,
                   signal=st.signal, error=st.error[:2000], pid=st.pid, started=st.started,
                   ended=st.ended, note=note)


__all__ = ["JobWaitTimeout", "JobsClosed", "ProcessRunner"]
