"""Acting on a job from any process, live runtime or not (``ag jobs cancel``, a runtime).

Everything goes through the store: a job nobody started is claimed CANCELLED (its folder, as a
job host claims it); else a cancel is written down (``cancel.json`` in the job's folder) before
the supervisor is signalled, so a supervisor that is just starting the job still sees it.
"""

from __future__ import annotations

import os
import signal
import time

from .protocol import CancelRequest, JobState, JobStatus
from .store import JobStore, group_members, proc_alive, proc_start_time


def request_cancel(store: JobStore, job_id: str, *, grace_s: float | None = None, by: str = "") -> JobStatus | None:
    """Start cancelling ``job_id``. Returns the final status when the cancel is already complete
    (the job had ended, or never started), else None (its supervisor is ending it)."""
    st = store.read(job_id)
    if st.terminal and st.state is not JobState.LOST:
        return st
    if grace_s is None:
        grace_s = store.read_spec(job_id).grace_s
    if st.state is JobState.QUEUED and not store.claimed(job_id):
        # Nobody started it and now nobody will: the cancel is the whole story.
        st.state, st.ended, st.cancelled_by = JobState.CANCELLED, time.time(), by
        st.error = "cancelled before it started"
        if store.claim(st):
            return st
    if st.runner == "dask":  # no local supervisor: the cancel goes through the cluster
        from .dask_runner import cancel_remote

        return cancel_remote(store, store.read(job_id), grace_s=grace_s, by=by)
    store.request_cancel(job_id, CancelRequest(by=by, grace_s=grace_s))
    st = store.read_raw(job_id)
    if st.supervisor_pid and proc_alive(st.supervisor_pid, st.supervisor_start):
        try:
            os.kill(st.supervisor_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        return None
    if st.state is JobState.RUNNING:
        # LOST: the supervisor is gone. If the job itself is still there, end its group here.
        kill_orphan(store, st, grace_s=grace_s, by=by)
        return store.read(job_id)
    return None  # claimed, its supervisor is starting: it reads cancel.json after the start


def kill_orphan(store: JobStore, st: JobStatus, *, grace_s: float, by: str) -> None:
    """End what is left of the process group of a job whose supervisor died (SIGTERM, SIGKILL
    after ``grace_s``) and record it CANCELLED. Nothing is signalled if the group's id may
    belong to someone else now: its leader's pid is alive but started at another time."""
    pgid = st.pid
    if not pgid:
        return
    leader = proc_start_time(pgid)
    if leader is not None and leader != st.pid_start:
        return  # the pid was reused: not our group
    if not group_members(pgid):
        return  # nothing left to end; how it ended stays unknown (LOST)
    _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    _killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)
    st.state, st.ended, st.cancelled_by = JobState.CANCELLED, time.time(), by
    st.error = f"cancelled by {by or 'request'} (its supervisor had died)"
    store.write(st, fsync=True)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_terminal(store: JobStore, job_id: str, timeout_s: float) -> JobStatus:
    """Poll the job's state until it is terminal or ``timeout_s`` passed (for the CLI, which
    has no runtime to be woken by)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        st = store.read(job_id)
        if st.terminal or time.monotonic() >= deadline:
            return st
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
