"""What every runner of the job protocol shares, wherever its jobs run.

A runner (``ProcessRunner``: local processes; ``DaskRunner``: a dask cluster) follows jobs as
``Job`` entries — the last status it knows and the cancel scopes of the tasks waiting for the
end — and differs only in how it hands a job over and how it learns what became of it. The rest
is here, once: a submit that is idempotent by key (the store's ``by-key`` link decides between
processes), finding a job by id, waiting that costs no task per job (a parked waiter is a cancel
scope that the runner cancels when it records the end), and the facts about jobs in the log of
the run they belong to.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import attrs
import trio

from .. import events as ev
from .protocol import JobRecord, JobSpec, JobState, JobStatus
from .store import JobStore, UnknownJob, new_job_id, proc_start_time


class JobWaitTimeout(TimeoutError):
    """``wait(job_id, timeout_s=...)`` ran out of time (the job was cancelled unless detached)."""


class JobsClosed(RuntimeError):
    pass


@attrs.define(eq=False)
class Job:
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


class JobRunner:
    """The jobs of one runtime. Subclasses say how a job is adopted (``adopt``), what its
    state is now (``refresh``), how it is cancelled (``cancel``) and recorded ended
    (``_ended``, which must call ``_wake_waiters``)."""

    RUNNER = ""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.store = JobStore(rt.layout.home).ensure()
        self.jobs: dict[str, Job] = {}
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._pid = os.getpid()
        self._pid_start = proc_start_time(self._pid) or 0

    # -- to be provided -----------------------------------------------------------------------

    def adopt(self, job_id: str) -> Job:
        raise NotImplementedError

    def refresh(self, job: Job) -> JobStatus:
        raise NotImplementedError

    async def cancel(self, job_id: str, *, grace_s: float | None = None, by: str = "") -> JobStatus:
        raise NotImplementedError

    # -- finding jobs -------------------------------------------------------------------------

    def _new(self, spec: JobSpec, *, key: str | None, run_id: str, node: str,
             **record: Any) -> tuple[Job, bool]:
        """The job a submit stands for, and whether it is new: with ``key``, the job first
        submitted with that key, by any process (adopted), else a new QUEUED job in the store
        (``record``: more fields of its JobRecord) and ``job_submitted`` in its run's log."""
        if self._closed:
            raise JobsClosed("the runtime's jobs are closed")
        if key:
            known = self.store.job_for_key(key)
            if known is not None:
                return self.adopt(known), False
        job_id = new_job_id()
        rec = JobRecord(job_id=job_id, spec=spec, runner=self.RUNNER, run_id=run_id, node=node,
                        key=key or "", submitted=time.time(), **record)
        self.store.create(rec)
        if key:
            prior = self.store.bind_key(key, job_id)
            if prior is not None:  # another process won the race for this key
                self.store.discard(job_id)
                return self.adopt(prior), False
        job = self.jobs[job_id] = Job(job_id, rec.queued(), grace_s=spec.grace_s, spec=spec)
        self._emit(job, ev.JobSubmitted, runner=self.RUNNER, name=spec.name, key=key or "",
                   argv=tuple(spec.argv) if spec.argv else (spec.fn,))
        return job, True

    def known(self, job_id: str) -> Job:
        try:
            return self.jobs.get(job_id) or self.adopt(job_id)
        except UnknownJob:
            raise
        except (OSError, ValueError) as exc:
            raise UnknownJob(job_id) from exc

    def status(self, job_id: str) -> JobStatus:
        return self.refresh(self.known(job_id))

    # -- waiting ------------------------------------------------------------------------------

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
                await self._park(job, deadline)
            return job.status
        except trio.Cancelled:
            if not detach and not job.terminal:
                job.release_key_on_end = True
                with trio.CancelScope(shield=True):
                    await self.cancel(job_id, by=cancelled_by or "the waiting node was cancelled")
            raise

    async def _park(self, job: Job, until: float = math.inf) -> None:
        """Sleep until the job's end is recorded (``_wake_waiters``) or ``until`` (trio time,
        on the runtime's timer), whichever is first."""
        with trio.CancelScope() as scope:
            job.waiters.add(scope)
            try:
                if until == math.inf:
                    await trio.sleep_forever()
                else:
                    await self.rt.timer.sleep_until(until)
            finally:
                job.waiters.discard(scope)

    @staticmethod
    def _wake_waiters(job: Job) -> None:
        for scope in job.waiters:
            scope.cancel()
        job.waiters.clear()

    # -- events -------------------------------------------------------------------------------

    def _emit(self, job: Job, cls: type, **fields: Any) -> None:
        """Record a fact about ``job`` in the log of the run it belongs to, if that run is live
        here (a job outlives its run; its folder stays the record)."""
        run = self.rt.runs.get(job.status.run_id) if job.status.run_id else None
        if run is not None:
            run.emit(cls, node=job.status.node, job_id=job.job_id, **fields)

    def _emit_state(self, job: Job, note: str = "") -> None:
        st = job.status
        self._emit(job, ev.JobStateChanged, state=st.state.value, exit_code=st.exit_code,
                   signal=st.signal, error=st.error[:2000], pid=st.pid, started=st.started,
                   ended=st.ended, note=note or (f"on {st.worker}" if st.worker and
                                                 st.state is JobState.RUNNING else ""))


__all__ = ["Job", "JobRunner", "JobWaitTimeout", "JobsClosed"]
