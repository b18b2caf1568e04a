"""Real jobs behind ``context.jobs()``: processes the runtime starts, watches, cancels, and
reattaches to after a crash.

    from aethergraph.jobs import ProcessJobs
    register_context_service("jobs", ProcessJobs(max_parallel=4))

    @tool(outputs=["job_id"])
    async def submit(spec: dict, *, context):
        return await context.jobs().submit(spec, key=context.idempotency_key)

    job_id = (await submit({"argv": ["python", "sim.py"], "timeout_s": 600}))["job_id"]
    status = await context.jobs().wait(job_id)        # or poll(job_id) in a loop, as the seed does

A job is a process in a session and process group of its own, under the runtime's job host (one
small process per runtime, in a session of its own, that outlives it) which records its pid,
start time, exit status and resource use in the store (``jobs/<job_id>/``, with
its stdout and stderr). So a job outlives a runtime killed with ``kill -9``, and ``ag resume``
finds it again by key: ``submit`` with a key that was submitted before — by this process or any
other — returns that job, never a second one.

Cancelling: ``cancel(job_id, grace_s=)`` sends SIGTERM to the job's process group (grandchildren
included) and SIGKILL after ``grace_s``. A task waiting in ``wait()`` that is cancelled — its
node cancelled from the dashboard or ``ag cancel``, retried with ``ag retry RUN NODE``, past its
deadline, its run cancelled by Ctrl-C — cancels the job before it returns, unless it waited with
``detach=True``; such a job gives up its key, so the next attempt submits anew. A job nobody
waits on is not cancelled with its run: it runs on, and its folder records how it ended.

The same protocol on a dask.distributed cluster: ``aethergraph.dask_jobs.DaskJobs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from aethergraph.runtime.engine import current_node, current_runtime
from aethergraph.runtime.jobs.protocol import JobSpec, JobSpecError, JobState, JobStatus
from aethergraph.runtime.jobs.base import JobWaitTimeout
from aethergraph.runtime.jobs.runner import ProcessRunner
from aethergraph.runtime.jobs.store import UnknownJob

from .services import Service

__all__ = ["JobSpec", "JobSpecError", "JobState", "JobStatus", "JobWaitTimeout", "ProcessJobs",
           "UnknownJob"]


def _runtime():
    return current_runtime.get()


def _node():
    return current_node.get()


class ProcessJobs(Service):
    """Local process jobs; at most ``max_parallel`` run at once, the rest are QUEUED."""

    def __init__(self, max_parallel: int = 4, *, scan_interval_s: float | None = None) -> None:
        if not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(f"max_parallel must be a whole number >= 1, got {max_parallel!r}")
        self.max_parallel = max_parallel
        self.scan_interval_s = scan_interval_s
        self._runners: dict[int, ProcessRunner] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def _runner(self) -> ProcessRunner:
        rt = _runtime()
        if rt is None:
            raise RuntimeError(f"{type(self).__name__} needs an open runtime (call it from a node)")
        runner = self._runners.get(id(rt))
        if runner is None or runner.rt is not rt:
            runner = self._runners[id(rt)] = self._make_runner(rt)
            rt.spawn(runner.run, name="jobs")
        return runner

    def _make_runner(self, rt: Any) -> ProcessRunner:
        return ProcessRunner(rt, max_parallel=self.max_parallel, scan_interval_s=self.scan_interval_s)

    async def start(self) -> None:
        self._runner()

    async def close(self) -> None:
        rt = _runtime()
        runner = self._runners.pop(id(rt), None) if rt is not None else None
        if runner is not None:
            await runner.close()

    # -- the protocol -------------------------------------------------------------------------

    async def submit(self, spec: JobSpec | dict | list, *, key: str | None = None) -> str:
        """Queue a job; return its id. ``spec``: a JobSpec, a dict of its fields
        (``{"argv": [...], "cwd": ..., "env": {...}, "timeout_s": ...}``) or an argv list.
        With ``key`` (give it ``context.idempotency_key``) the same key returns the same job."""
        node = _node()
        job_id = self._runner().submit(
            spec, key=key,
            run_id=node.run_id if node is not None else "",
            node=node.path if node is not None else "",
        )
        # A checkpoint, as every trio call should be: a node submitting a thousand jobs in a
        # loop lets the runner hand the first ones over while it submits the rest.
        await trio.lowlevel.checkpoint()
        return job_id

    async def status(self, job_id: str) -> JobStatus:
        return self._runner().status(job_id)

    async def poll(self, job_id: str) -> dict[str, Any]:
        """``{"status": ..., "result": ..., "error": ..., "exit_code": ..., "job_id": ...}``:
        the seed tutorial's shape; ``result`` is the last line a succeeded job printed."""
        return self._runner().status(job_id).poll_dict()

    async def wait(self, job_id: str, *, timeout_s: float | None = None, detach: bool = False) -> JobStatus:
        """Until the job ends (parked on the runtime's timer, woken when the job ends).

        Cancelling the caller cancels the job (and frees its key) unless ``detach``; so does
        ``timeout_s`` running out, which then raises ``JobWaitTimeout``."""
        node = _node()
        by = f"node {node.path} of run {node.run_id}" if node is not None else ""
        return await self._runner().wait(job_id, timeout_s=timeout_s, detach=detach, cancelled_by=by)

    async def cancel(self, job_id: str, *, grace_s: float | None = None) -> JobStatus:
        node = _node()
        by = f"node {node.path} of run {node.run_id}" if node is not None else "api"
        return await self._runner().cancel(job_id, grace_s=grace_s, by=by)

    async def logs(self, job_id: str, tail: int = 50, stream: str = "stdout") -> list[str]:
        """The last ``tail`` lines of the job's stdout (or stderr)."""
        runner = self._runner()
        runner.known(job_id)
        return runner.store.tail(job_id, tail, stream)

    async def follow(self, job_id: str, stream: str = "stdout", *,
                     interval_s: float = 0.1) -> AsyncIterator[str]:
        """Every line of the job's output, from the first, as it is written; ends when the
        job has ended and its output is read to the end."""
        runner = self._runner()
        job = runner.known(job_id)
        path = runner.store.output_path(job_id, stream)
        timer = runner.rt.timer
        f = None  # the job host creates the file when it starts the job
        partial = b""
        try:
            while True:
                ended = runner.refresh(job).terminal
                if f is None:
                    try:
                        f = open(path, "rb")
                    except FileNotFoundError:
                        pass
                data = f.read() if f is not None else b""
                if data:
                    *lines, partial = (partial + data).split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", "replace")
                elif ended:
                    if partial:
                        yield partial.decode("utf-8", "replace")
                    return
                else:
                    await timer.sleep(interval_s)
        finally:
            if f is not None:
                f.close()
