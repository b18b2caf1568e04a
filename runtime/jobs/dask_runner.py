"""The runtime side of cluster jobs: a dask.distributed client beside trio, never under it.

``distributed`` is imported only when a runner first needs its client (``import runtime`` and
``import aethergraph`` stay free of it). The client is the *synchronous* ``Client``: it runs its
own event loop in its own thread. Trio reaches it only through ``trio.to_thread`` (batches: one
call submits and publishes every job queued since the last one), and it reaches trio only through
the trio token (``run_sync_soon``) from two push channels:

- a done callback on each future (run by distributed on its callback thread): the job ended;
- worker events on ``dask_worker.TOPIC`` (a subscription on the client's loop): the job started on
  a worker, an argv job wrote output, or a callable returned — with its value when it is small
  JSON, so that the end is recorded from the message and the result is never fetched (a
  finished future is held ``HOLD_S`` for its message; without one, the result is gathered).

So 10,000 jobs are 10,000 futures and dict entries, six trio tasks (submitter, collector,
state flusher, journal writer, forgetter, timeouts) and a short-lived task per burst of held futures, not 10,000 pollers. The
nodes' submits are checkpoints: the submitter hands jobs over in batches while they submit.

Surviving the runtime's death: each job is a task under the key ``job_id`` and a *published
dataset* of the same name on the scheduler, which keeps the task (and its result) when our client
goes. A runtime that finds the job again (``ag resume``) gets the futures back by name
(``get_dataset``), one call for all of them, and collects; the dataset is removed once the job's
end is recorded in the store. A job is claimed at birth (its record names this runtime) and
handed to the cluster only by that runtime: never submitted twice for one key (the key's
``by-key`` link names the job), and a runtime that dies between a submit and the hand-over
leaves it LOST for the retry policy, not resubmitted.

The store keeps what other processes read (``ag jobs``, the Jobs tab, a resume): the job's
record and its states, as lines of this runtime's journal (``journal.py``), not a folder of
files per job — a file creation or rename costs ~0.2 ms on a slow disk, and a tiny job had
four. A job's folder is made only for its output (argv jobs: chunks while they run, completed
from the task's result when they end) or a cancel request.
"""

from __future__ import annotations

import collections
import heapq
import logging
import os
import time
from typing import Any

import msgspec
import trio

from . import dask_worker
from .base import Job, JobRunner, JobsClosed
from .protocol import ENCODER, JobSpec, JobSpecError, JobState, JobStatus, Rusage
from .journal import JournaledStore
from .store import JobStore, UnknownJob, proc_alive, write_atomic

log = logging.getLogger("aethergraph.jobs")

ENV_SCHEDULER = "AETHERGRAPH_DASK_SCHEDULER"


class DaskRunner(JobRunner):
    """Cluster jobs of one runtime. Built by ``aethergraph.dask_jobs.DaskJobs``."""

    RUNNER = "dask"

    def __init__(self, rt: Any, *, address: str | None = None, cluster: Any = None,
                 cluster_kwargs: dict | None = None, client_kwargs: dict | None = None,
                 ship_code: bool = False) -> None:
        super().__init__(rt)
        # Records and states as lines of this runtime's journal, not a folder per job.
        self.store = JournaledStore(rt.layout.home)
        self.ship_code = ship_code
        self.address = address
        self.cluster = cluster
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.futures: dict[str, Any] = {}
        self.scan_interval_s = 0.25
        self._client: Any = None
        self._cluster_address = ""
        self._own_cluster: Any = None
        self._client_lock = trio.Lock()
        self._to_submit: list[str] = []
        self._to_attach: list[str] = []
        self._done: list[Any] = []
        self._done_q: collections.deque = collections.deque()  # appended to from dask's threads
        self._done_armed = False
        # Callables handed over by this runtime: their end comes as a worker message carrying a
        # small result; a future that finishes first is held (HOLD_S) for that message rather
        # than fetched. Ended from a message: unpublished with the collector's next batch.
        self._expect_end: set[str] = set()
        self._held: dict[str, Any] = {}
        self._ended_by_message: list[str] = []  # recorded ended, still published
        self._forget_lock = trio.Lock()
        self._submit_wake = trio.Event()
        self._collect_wake = trio.Event()
        self._deadline_wake = trio.Event()
        self._deadlines: list[tuple[float, str]] = []
        self._unwritten: set[str] = set()
        self._flush_wake = trio.Event()
        self._token: Any = None
        self._output_dirs: set[str] = set()
        self._journal_wake = trio.Event()
        self._forget_wake = trio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._submitter, name="dask jobs submitter")
            nursery.start_soon(self._collector, name="dask jobs collector")
            nursery.start_soon(self._timeouts, name="dask jobs timeouts")
            nursery.start_soon(self._flusher, name="dask jobs state flusher")
            nursery.start_soon(self._journal_flusher, name="dask jobs journal writer")
            nursery.start_soon(self._forgetter, name="dask jobs forgetter")
            self.store.on_pending = self._journal_pending
            task_status.started()

    async def close(self) -> None:
        """Jobs not yet handed to the cluster are recorded cancelled (they would never start).
        Jobs on a cluster we connected to run on, held by the scheduler, for a later resume; a
        LocalCluster we started ends with us, and so do its jobs (recorded cancelled)."""
        self._closed = True
        self._flush_running()
        for job_id in self._to_submit:
            self._cancel_unsubmitted(self.jobs[job_id], "the runtime closed before submitting it")
        self._to_submit.clear()
        await self._collect_held()
        client, self._client = self._client, None
        cluster, self._own_cluster = self._own_cluster, None
        if cluster is not None:
            for job in list(self.jobs.values()):
                if not job.terminal:
                    self._record(job, JobState.CANCELLED, error="the runtime closed, and the "
                                 "LocalCluster it had started with it", cancelled_by="runtime close")
        if client is not None or cluster is not None:
            def shut() -> None:
                try:
                    if client is not None:
                        client.close(timeout=10)
                finally:
                    if cluster is not None:
                        cluster.close(timeout=10)

            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(shut)
        self.store.writer.close()

    async def _collect_held(self) -> None:
        """Closing: the finished callables still held for their end message are fetched now,
        so that their ends are recorded (and a LocalCluster of ours does not take them along),
        and the scheduler forgets every job whose end is recorded."""
        held = [f for f in self._held.values() if not self.jobs[f.key].terminal]
        self._held.clear()
        client = self._client
        if client is None:
            return
        with trio.CancelScope(shield=True):
            if held:
                try:
                    outcomes = await trio.to_thread.run_sync(self._collect_batch, client, held)
                except Exception as exc:
                    log.warning("dask jobs: closing, could not collect %d ended jobs: %s", len(held), exc)
                    outcomes = []
                for job_id, state, fields in outcomes:
                    if state in (JobState.SUCCEEDED, JobState.FAILED):
                        self._record(self.jobs[job_id], state, **fields)
                        self.futures.pop(job_id, None)
                        self._ended_by_message.append(job_id)
            await self._forget_recorded(client)

    def _connect(self) -> Any:
        """In a thread: the client (and the LocalCluster, when nothing names a scheduler)."""
        import cloudpickle
        from distributed import Client, LocalCluster

        # By default the workers import the worker-side module (aethergraph installed there, as
        # the users' own callables must be): a task then names it in ~60 bytes. ship_code sends
        # it by value with every task (~2 KB) to workers that have dask only.
        if self.ship_code:
            cloudpickle.register_pickle_by_value(dask_worker)
        kw = {"set_as_default": False, **self.client_kwargs}
        address = self.address or os.environ.get(ENV_SCHEDULER) or None
        if self.cluster is not None:
            client = Client(self.cluster, **kw)
        elif address:
            client = Client(address, **kw)
        else:
            ckw = {"dashboard_address": None, "scheduler_kwargs": {"allowed_failures": 0},
                   **self.cluster_kwargs}
            self._own_cluster = LocalCluster(**ckw)
            client = Client(self._own_cluster, **kw)
        client.subscribe_topic(dask_worker.TOPIC, self._on_event_thread)
        self._forget_ended(client)
        return client

    def _forget_ended(self, client: Any) -> None:
        """Datasets of jobs this store already records ended: a runtime died between writing
        the end and unpublishing it. Let the scheduler drop them (other names are not ours)."""
        try:
            names = [n for n in client.list_datasets() if isinstance(n, str) and n.startswith("job-")]
            ended = []
            for name in names:
                try:
                    if self.store.read_raw(name).terminal:
                        ended.append(name)
                except (UnknownJob, ValueError, OSError):
                    continue
            if ended:
                client.unpublish_dataset(ended)
        except Exception as exc:  # housekeeping: never a reason not to run jobs
            log.warning("dask jobs: could not tidy ended jobs on the scheduler: %s", exc)

    async def client(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await trio.to_thread.run_sync(self._connect)
                    self._cluster_address = self._client.scheduler.address
        return self._client

    # -- submit, adopt ------------------------------------------------------------------------

    def submit(self, spec: Any, *, key: str | None = None, run_id: str = "", node: str = "") -> str:
        if self._closed:
            raise JobsClosed("the runtime's jobs are closed")
        spec = JobSpec.coerce(spec)
        try:
            ENCODER.encode(spec)
        except (TypeError, ValueError, OverflowError):
            raise JobSpecError("job spec: args and kwargs must be JSON values (they are "
                               "written to the store)") from None
        # Claimed at birth, in its record: this runtime hands it over in its next batch, and
        # nobody else may (a runtime that dies before leaves it LOST, never submitted twice).
        # Until the client is connected the cluster's address is unknown: the hand-over
        # journals the claim again with it.
        job, new = self._new(spec, key=key, run_id=run_id, node=node, owner_pid=self._pid,
                             owner_start=self._pid_start, cluster=self._cluster_address)
        if new:
            self._to_submit.append(job.job_id)
            self._submit_wake.set()
        return job.job_id

    def adopt(self, job_id: str) -> Job:
        """Follow a job this runtime did not submit (or submitted before it died): a job the
        store says is queued and unclaimed is submitted; a claimed one is looked for on the
        cluster by name (in the submitter's next batch)."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job
        record = self.store.read_record(job_id)
        if record.runner != "dask":
            raise UnknownJob(job_id)
        status = self.store.read(job_id)
        job = self.jobs[job_id] = Job(job_id, status, grace_s=record.spec.grace_s, spec=record.spec)
        if not job.terminal:
            if not self.store.claimed(job_id):
                self._to_submit.append(job_id)
            else:
                self._to_attach.append(job_id)
            self._submit_wake.set()
        self._emit_state(job, note="reattached")
        return job

    def refresh(self, job: Job) -> JobStatus:
        """What this runtime knows (it is the one writing the job's state)."""
        return job.status

    # -- recording ----------------------------------------------------------------------------

    def _record(self, job: Job, state: JobState, *, note: str = "", write: bool = True,
                **fields: Any) -> None:
        """Move ``job`` to ``state``: the store (a journal line) first, then the run's log, then
        waiters.
        ``write=False`` (RUNNING only): the state file and the log's ``job_state`` are written by
        the flusher a moment later, and not at all if the job has ended by then (its end then
        says when it started and where): for tiny jobs, files and events are most of the cost."""
        if job.terminal:
            return
        new = msgspec.structs.replace(job.status, state=state, **fields)
        if state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST):
            new.ended = new.ended or time.time()
        if not write:  # RUNNING: status() says so now; the file and the log a moment later
            job.status = new
            self._unwritten.add(job.job_id)
            self._flush_wake.set()
            return
        self.store.write(new, fsync=getattr(self.rt, "durability", "") == "strict")
        job.status = new
        self._emit_state(job, note=note)
        if new.terminal:
            self._ended(job)

    def _ended(self, job: Job) -> None:
        # LOST gives up the key: nobody knows whether it ran, and the next attempt (the retry
        # policy of the node) must submit anew rather than be handed the lost job again.
        if job.status.key and (job.release_key_on_end or job.status.state is JobState.LOST):
            self.store.release_key(job.status.key, job.job_id)
        self._wake_waiters(job)

    def _cancel_unsubmitted(self, job: Job, why: str, by: str = "") -> None:
        st = msgspec.structs.replace(job.status, state=JobState.CANCELLED, ended=time.time(),
                                     cancelled_by=by or why, error=why)
        if self.store.claim(st):
            job.status = st
            self._emit_state(job)
            self._ended(job)
        else:
            job.status = self.store.read(job.job_id)

    # -- the submitter ------------------------------------------------------------------------

    # One graph per batch: a node submitting in a loop fills a batch for this long.
    SUBMIT_GATHER_S = 0.01

    async def _submitter(self) -> None:
        while True:
            await self._submit_wake.wait()
            await trio.sleep(self.SUBMIT_GATHER_S)  # the jobs submitted meanwhile go too
            self._submit_wake = trio.Event()
            try:
                client = await self.client()
            except Exception as exc:  # no cluster: every waiting job fails, saying why
                why = f"cannot reach the dask cluster: {type(exc).__name__}: {exc}"
                log.error(why)
                for job_id in self._to_submit:
                    job = self.jobs[job_id]
                    if self.store.claim(msgspec.structs.replace(job.status, owner_pid=self._pid)):
                        self._record(job, JobState.FAILED, error=why)
                self._to_submit.clear()
                for job_id in self._to_attach:
                    self._record(self.jobs[job_id], JobState.LOST, error=why)
                self._to_attach.clear()
                continue
            batch, self._to_submit = self._to_submit, []
            claims = [self._claim_of(self.jobs[job_id]) for job_id in batch
                      if not self.jobs[job_id].terminal]  # (status, claimed at birth)
            attach, self._to_attach = self._to_attach, []
            if claims:
                # Claimed and handed over in a thread: while it creates the claims (a file each)
                # and talks to the scheduler, the nodes go on submitting the next batch.
                try:
                    won, futs = await trio.to_thread.run_sync(self._claim_and_submit, client, claims,
                                                              abandon_on_cancel=False)
                except _SubmitFailed as exc:  # whether the cluster holds them is unknown: LOST
                    log.error("dask jobs: submitting %d jobs failed: %s", len(exc.won), exc.why)
                    for claim in exc.won:
                        job = self.jobs[claim.job_id]
                        job.status = claim
                        self._record(job, JobState.LOST, error=(
                            f"handing it to the cluster failed: {exc.why}")[:2000])
                    won, futs = [], {}
                lost_race = {c.job_id for c, _ in claims} - {c.job_id for c in won}
                for claim in won:
                    job = self.jobs[claim.job_id]
                    if job.terminal:  # cancelled while it was being handed over
                        continue
                    job.status = msgspec.structs.replace(claim, state=job.status.state,
                                                         worker=job.status.worker,
                                                         started=job.status.started)
                for job_id in lost_race:  # another runtime handed it over, or cancelled it
                    attach.append(job_id)
                for job_id, fut in futs.items():
                    job = self.jobs[job_id]
                    if not job.terminal:  # (a job may have ended, by its message, meanwhile)
                        self.futures[job_id] = fut
                        if job.spec.fn:
                            self._expect_end.add(job_id)
            if attach:
                found, processing = await trio.to_thread.run_sync(self._attach_batch, client,
                                                                  attach, abandon_on_cancel=False)
                for job_id in attach:
                    job = self.jobs[job_id]
                    if job.terminal:
                        continue
                    fut = found.get(job_id)
                    if fut is None:
                        st = self.store.read_raw(job_id)
                        if st.terminal:  # its owner recorded the end meanwhile
                            job.status = st
                            self._emit_state(job)
                            self._ended(job)
                            continue
                        if (st.owner_pid and st.owner_pid != self._pid
                                and proc_alive(st.owner_pid, st.owner_start)):
                            # Claimed by a live runtime here that has not published it yet:
                            # look again shortly rather than call it lost.
                            self._nursery.start_soon(self._attach_later, job_id)
                            continue
                        self._record(job, JobState.LOST, error=(
                            "the cluster no longer holds this job: the runtime that submitted "
                            "it died before the scheduler had it, or the scheduler restarted"))
                        continue
                    self.futures[job_id] = fut
                    if job_id in processing and job.status.state is JobState.QUEUED:
                        self._record(job, JobState.RUNNING, write=False, worker=processing[job_id],
                                     started=job.status.started or time.time(), note="reattached")

    async def _attach_later(self, job_id: str) -> None:
        await trio.sleep(0.2)
        self._to_attach.append(job_id)
        self._submit_wake.set()

    def _claim_of(self, job: Job) -> tuple[JobStatus, bool]:
        if (job.status.owner_pid == self._pid and job.status.owner_start == self._pid_start
                and job.status.cluster == self._cluster_address):
            return job.status, True
        return msgspec.structs.replace(job.status, owner_pid=self._pid, owner_start=self._pid_start,
                                       cluster=self._cluster_address), False

    def _claim_and_submit(self, client: Any, claims: list[tuple[JobStatus, bool]]) -> tuple[list[JobStatus], dict]:
        """In a thread: claim each job in the store (unless it was claimed at birth), hand the
        ones won to the cluster."""
        self.store.writer.flush()  # the records, before the cluster has the jobs
        won, again = [], []
        for claim, born in claims:
            if born:
                won.append(claim)
            elif self.store.journaled(claim.job_id):
                # Claimed at birth by this runtime, before the client knew the cluster's
                # address: the claim is journaled again, naming it (for ``ag jobs cancel``).
                won.append(claim)
                again.append(claim)
            elif self.store.claim(claim):  # a job of an earlier version, with a folder
                won.append(claim)
        self.store.write_many(again)
        self.store.writer.flush()
        if not won:
            return won, {}
        try:
            return won, self._submit_batch(client, [(c.job_id, self.jobs[c.job_id].spec) for c in won])
        except Exception as exc:
            log.debug("dask jobs: submitting failed", exc_info=True)
            raise _SubmitFailed(won, f"{type(exc).__name__}: {exc}") from exc

    def _submit_batch(self, client: Any, claimed: list[tuple[str, JobSpec]]) -> dict[str, Any]:
        # One graph per kind of job, resources and priority, not one per job: the scheduler's
        # cost is per graph (B10: a thousand submits cost twice a map of a thousand).
        groups: dict[tuple, list[tuple[str, JobSpec]]] = {}
        for job_id, spec in claimed:
            group = (bool(spec.fn), tuple(sorted(spec.resources.items())), spec.priority)
            groups.setdefault(group, []).append((job_id, spec))
        futs = {}
        for (callable_, resources, priority), items in groups.items():
            ids = [job_id for job_id, _ in items]
            if callable_:
                got = client.map(dask_worker.run_callable, ids, [s.fn for _, s in items],
                                 [s.args for _, s in items], [s.kwargs for _, s in items],
                                 key=ids, pure=False, retries=0, resources=dict(resources) or None,
                                 priority=priority)
            else:
                got = client.map(dask_worker.run_argv, ids, [msgspec.to_builtins(s) for _, s in items],
                                 key=ids, pure=False, retries=0, resources=dict(resources) or None,
                                 priority=priority)
            futs.update(zip(ids, got))
        # Published, the tasks outlive this client: the scheduler keeps them for a resume.
        client.publish_dataset(**futs)
        for fut in futs.values():
            self._watch(client, fut)
        return futs

    def _attach_batch(self, client: Any, job_ids: list[str]) -> tuple[dict, dict]:
        futs = client.get_dataset(job_ids, default=None)
        found = {j: f for j, f in zip(job_ids, futs) if f is not None}
        processing = {}
        if found:
            for worker, keys in client.processing().items():
                for k in keys:
                    if k in found:
                        processing[k] = worker
        for fut in found.values():
            self._watch(client, fut)
        return found, processing

    # -- pushed from dask ---------------------------------------------------------------------

    def _watch(self, client: Any, fut: Any) -> None:
        """Be told when ``fut`` ends, on the client's loop thread, which hands it to trio.

        ``Future.add_done_callback`` would add a hop through a thread pool per future; the
        coroutine it schedules, ``done_callback``, is used directly here when it exists."""
        try:
            from distributed.client import done_callback
        except ImportError:
            fut.add_done_callback(self._on_done_thread)
        else:
            client.loop.add_callback(done_callback, fut, self._on_done_thread)

    def _on_done_thread(self, fut: Any) -> None:
        """On a dask thread: queue the ended future for trio; one trio wake-up per burst of
        them, not one per future."""
        self._done_q.append(fut)
        if not self._done_armed:
            self._done_armed = True
            try:
                self._token.run_sync_soon(self._on_done)
            except trio.RunFinishedError:
                pass

    def _on_done(self) -> None:
        self._done_armed = False  # first: a future queued from here on arms another wake-up
        q = self._done_q
        while q:
            self._done.append(q.popleft())
        if not self._closed:
            self._collect_wake.set()

    def _on_event_thread(self, event: Any) -> None:
        """On the client's loop thread: a worker event (started, output) for trio."""
        try:
            self._token.run_sync_soon(self._on_event, event[1] if isinstance(event, tuple) else event)
        except trio.RunFinishedError:
            pass

    def _on_event(self, msgs: Any) -> None:
        for msg in msgs if isinstance(msgs, (list, tuple)) else [msgs]:  # msgpack: a tuple
            self._on_one_event(msg)

    def _on_one_event(self, msg: Any) -> None:
        try:
            job = self.jobs.get(msg.get("job_id")) if isinstance(msg, dict) else None
            if job is None or job.terminal:
                return
            if "stream" in msg:
                if msg["stream"] in ("stdout", "stderr") and isinstance(msg.get("data"), bytes):
                    at = msg.get("at")
                    self._append_output(job.job_id, msg["stream"], msg["data"],
                                        at=at if type(at) is int and at >= 0 else None)
            elif msg.get("state") == "ended":
                self._on_end_message(job, msg)
            elif msg.get("state") == "running" and job.status.state is JobState.QUEUED:
                self._record(job, JobState.RUNNING, write=False, worker=str(msg.get("worker", ""))[:200],
                             started=float(msg.get("started") or time.time()))
                if job.spec.fn and job.spec.timeout_s:
                    heapq.heappush(self._deadlines, (trio.current_time() + job.spec.timeout_s, job.job_id))
                    self._deadline_wake.set()
        except Exception:
            log.exception("dask jobs: a worker event could not be recorded: %r", msg)

    HOLD_S = 0.5

    def _on_end_message(self, job: Job, msg: dict) -> None:
        """A callable returned on its worker: record its end from the message when it carries
        the result; otherwise the result is fetched from the cluster (now, if the task is
        already done here; else when it is)."""
        job_id = job.job_id
        self._expect_end.discard(job_id)
        try:
            value = msgspec.json.decode(msg["result"]) if job.spec.fn else None
        except (KeyError, TypeError, msgspec.DecodeError):
            fut = self._held.pop(job_id, None)
            if fut is not None:
                self._done.append(fut)
                self._collect_wake.set()
            return
        started = msg.get("started")
        self._record(job, JobState.SUCCEEDED, result=value, worker=str(msg.get("worker", ""))[:200],
                     started=float(started) if started else job.status.started)
        self._held.pop(job_id, None)
        self.futures.pop(job_id, None)
        self._ended_by_message.append(job_id)
        self._collect_wake.set()

    async def _release_held(self, job_ids: list[str]) -> None:
        """The end messages of these did not come in time (lost, or slow): fetch them."""
        await trio.sleep(self.HOLD_S)
        for job_id in job_ids:
            fut = self._held.pop(job_id, None)
            if fut is not None:
                self._done.append(fut)
                self._collect_wake.set()

    def _append_output(self, job_id: str, stream: str, data: bytes, *, at: int | None = None) -> None:
        """Write a job's output: at byte ``at`` of its file when the bytes' place is known (the
        worker's live chunks, and the final output's missing tail), so the same bytes arriving
        twice by the two ways, in either order and from two threads, land once; appended
        otherwise (a chunk from a worker that does not say where it starts)."""
        if job_id not in self._output_dirs:  # the job's folder, made for its first output
            self.store.output_dir(job_id)
            self._output_dirs.add(job_id)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (0 if at is not None else os.O_APPEND)
        fd = os.open(self.store.path(job_id, stream), flags, 0o600)
        try:
            if at is None:
                os.write(fd, data)
            else:
                os.pwrite(fd, data, at)
        finally:
            os.close(fd)

    # -- the collector ------------------------------------------------------------------------

    async def _collector(self) -> None:
        while True:
            await self._collect_wake.wait()
            self._collect_wake = trio.Event()
            batch, self._done = self._done, []
            batch = [f for f in batch if f.key in self.jobs and not self.jobs[f.key].terminal]
            held = [f.key for f in batch if f.status == "finished" and f.key in self._expect_end]
            if held:
                for f in batch:
                    if f.key in self._expect_end and f.status == "finished":
                        self._expect_end.discard(f.key)  # held once, then fetched
                        self._held[f.key] = f
                batch = [f for f in batch if f.key not in self._held]
                self._nursery.start_soon(self._release_held, held)
            client = self._client
            if client is None or self._closed:
                continue  # closing: a future our own client drops is not the job's end
            if not batch:
                self._forget_wake.set()
                continue
            try:
                outcomes = await trio.to_thread.run_sync(self._collect_batch, client, batch,
                                                         abandon_on_cancel=False)
            except Exception:  # the connection dropped mid-batch: try again in a moment
                log.exception("dask jobs: collecting %d ended jobs failed; retrying", len(batch))
                await trio.sleep(1.0)
                self._done.extend(batch)
                self._collect_wake.set()
                continue
            for job_id, state, fields in outcomes:
                job = self.jobs[job_id]
                if job.terminal:
                    continue
                if state in (JobState.LOST, JobState.CANCELLED):
                    # Gone from the cluster because another runtime collected it and let it go?
                    # Then the store has its end: that is the fact, not our view of it.
                    known = self.store.read_raw(job_id)
                    if known.terminal:
                        job.status = known
                        self._emit_state(job)
                        self._ended(job)
                        self.futures.pop(job_id, None)
                        continue
                if state is JobState.CANCELLED or (state is JobState.LOST and self.store.read_cancel(job_id)):
                    req = self.store.read_cancel(job_id)
                    state = JobState.CANCELLED
                    fields.setdefault("cancelled_by", req.by if req else "the cluster")
                    fields.setdefault("error", f"cancelled by {fields['cancelled_by']}")
                self._record(job, state, **fields)
                self._ended_by_message.append(job_id)
                self.futures.pop(job_id, None)
            self._forget_wake.set()

    # Ended jobs are let go by the scheduler in batches at most this often: one unpublish
    # call per burst of ends was hundreds of calls a second for tiny jobs (B10).
    FORGET_EVERY_S = 0.1

    async def _forgetter(self) -> None:
        while True:
            await self._forget_wake.wait()
            await trio.sleep(self.FORGET_EVERY_S)
            self._forget_wake = trio.Event()
            client = self._client
            if client is not None and not self._closed:
                await self._forget_recorded(client)

    async def _forget_recorded(self, client: Any) -> None:
        """The ends are in the store: the scheduler may forget those jobs now. One at a time
        (closing waits for the one under way, then forgets the rest)."""
        async with self._forget_lock:
            ended, self._ended_by_message = self._ended_by_message, []
            if ended:  # shielded: a cancelled caller must not drop the names it took
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._flush_and_unpublish, client, ended)

    def _collect_batch(self, client: Any, batch: list[Any]) -> list[tuple[str, JobState, dict]]:
        from distributed.scheduler import KilledWorker

        finished = [f for f in batch if f.status == "finished"]
        values: dict[str, Any] = {}
        if finished:
            try:
                for f, v in zip(finished, client.gather(finished)):
                    values[f.key] = v
            except Exception:  # one result gone with its worker: take them one by one
                for f in finished:
                    try:
                        values[f.key] = f.result(timeout=30)
                    except Exception as exc:
                        values[f.key] = _Lost(f"its result was lost: {type(exc).__name__}: {exc}")
        where: dict = {}
        if any(self.jobs[f.key].spec.fn and not self.jobs[f.key].status.worker for f in finished):
            try:  # a job that ended before its "started" event came: where its result is
                where = client.who_has(finished)
            except Exception:
                where = {}
        out = []
        for f in batch:
            job = self.jobs[f.key]
            if f.status == "finished":
                value = values[f.key]
                if isinstance(value, _Lost):
                    out.append((f.key, JobState.LOST, {"error": value.why}))
                elif job.spec.fn:
                    fields = {"result": _jsonable(value)}
                    if not job.status.worker and where.get(f.key):
                        fields["worker"] = str(where[f.key][0])[:200]
                    out.append((f.key, JobState.SUCCEEDED, fields))
                else:
                    out.append((f.key, *self._argv_outcome(f.key, value)))
            elif f.status == "error":
                exc = f.exception()
                if isinstance(exc, ModuleNotFoundError) and exc.name in ("aethergraph", "aethergraph.runtime", "aethergraph.runtime.jobs"):
                    out.append((f.key, JobState.FAILED, {"error": (
                        f"{exc} on the worker: install aethergraph[dask] on the workers, or "
                        "use DaskJobs(ship_code=True) to send the worker-side code with each task")}))
                elif isinstance(exc, KilledWorker):
                    out.append((f.key, JobState.LOST, {"error": (
                        f"the worker running it died ({type(exc).__name__}: {exc})")[:4000]}))
                else:
                    fields = {"error": _error_text(exc, f.traceback())}
                    for note in getattr(exc, "__notes__", None) or ():
                        if isinstance(note, str) and note.startswith(dask_worker.WORKER_NOTE):
                            fields["worker"] = note[len(dask_worker.WORKER_NOTE):][:200]
                    out.append((f.key, JobState.FAILED, fields))
            elif f.status == "cancelled":
                out.append((f.key, JobState.CANCELLED, {}))
            else:
                out.append((f.key, JobState.LOST, {"error": f"the cluster reports it {f.status}"}))
        return out

    def _argv_outcome(self, job_id: str, value: dict) -> tuple[JobState, dict]:
        for stream in ("stdout", "stderr"):
            data = value.get(stream) or b""
            path = self.store.path(job_id, stream)
            try:
                have = os.path.getsize(path)
            except FileNotFoundError:
                have = 0
            if len(data) > have:  # what the live chunks did not bring (or a runtime missed)
                self._append_output(job_id, stream, data[have:], at=have)
            elif not os.path.exists(path):
                self.store.output_dir(job_id)
                write_atomic(path, b"")
        fields: dict[str, Any] = {
            "exit_code": value.get("exit_code"), "signal": value.get("signal"),
            "started": value.get("started"), "ended": value.get("ended"),
            "worker": str(value.get("worker", ""))[:200], "timed_out": bool(value.get("timed_out")),
        }
        ru = value.get("rusage")
        if isinstance(ru, dict):
            fields["rusage"] = Rusage(user_s=float(ru.get("user_s", 0)), system_s=float(ru.get("system_s", 0)),
                                      max_rss_kb=int(ru.get("max_rss_kb", 0)))
        if value.get("cancelled_by"):
            fields.update(cancelled_by=value["cancelled_by"], error=f"cancelled by {value['cancelled_by']}")
            return JobState.CANCELLED, fields
        if fields["exit_code"] == 0 and not fields["timed_out"]:
            lines = [ln for ln in (value.get("stdout") or b"").decode("utf-8", "replace").split("\n") if ln]
            fields["result"] = lines[-1] if lines else None
            return JobState.SUCCEEDED, fields
        tail = self.store.tail(job_id, 20, "stderr")
        what = value.get("error") or (
            f"exit code {fields['exit_code']}" if fields["exit_code"] is not None
            else f"killed by signal {fields['signal']}")
        fields["error"] = what + ("\n" + "\n".join(tail) if tail else "")
        return JobState.FAILED, fields

    @staticmethod
    def _unpublish(client: Any, job_ids: list[str]) -> None:
        try:
            client.unpublish_dataset(job_ids)
        except Exception as exc:

            log.warning("dask jobs: could not unpublish %d ended jobs: %s", len(job_ids), exc)

    def _journal_pending(self) -> None:
        """From any thread: journal lines were gathered; the journal writer takes them."""
        try:
            self._token.run_sync_soon(self._wake_journal_writer)
        except trio.RunFinishedError:
            self.store.writer.flush()

    def _wake_journal_writer(self) -> None:
        self._journal_wake.set()  # (the event of now, not of when the lines were gathered)

    JOURNAL_GATHER_S = 0.01

    async def _journal_flusher(self) -> None:
        """Writes the gathered journal lines, one ``write`` per burst, in a thread."""
        while True:
            await self._journal_wake.wait()
            await trio.sleep(self.JOURNAL_GATHER_S)  # the lines of the next few bursts too
            self._journal_wake = trio.Event()
            await trio.to_thread.run_sync(self.store.writer.flush, abandon_on_cancel=False)

    def _flush_and_unpublish(self, client: Any, job_ids: list[str]) -> None:
        """In a thread: the ends are in the journal before the scheduler forgets the jobs (a
        resume must never find a job gone from both)."""
        self.store.writer.flush()
        self._unpublish(client, job_ids)

    RUNNING_WRITE_DELAY_S = 0.05

    async def _flusher(self) -> None:
        """Writes the RUNNING states that ``_on_event`` recorded in memory and in the log."""
        while True:
            await self._flush_wake.wait()
            self._flush_wake = trio.Event()
            await trio.sleep(self.RUNNING_WRITE_DELAY_S)
            self._flush_running()

    def _flush_running(self) -> None:
        batch, self._unwritten = self._unwritten, set()
        to_write = []
        for job_id in batch:
            job = self.jobs.get(job_id)
            if job is None or job.terminal:
                continue
            fut = self.futures.get(job_id)
            if fut is None and not self._closed:
                # Started before the submitter took back its claim (its owner and cluster are
                # not in job.status yet): next time.
                self._unwritten.add(job_id)
                self._flush_wake.set()
                continue
            if fut is not None and fut.done():
                continue  # ended, not yet collected: its end says when it started and where
            if self._may_write_running(job):
                to_write.append(job.status)
            self._emit_state(job)
        self.store.write_many(to_write)  # one journal append for the lot

    def _may_write_running(self, job: Job) -> bool:
        """A state never goes back: RUNNING is written by the runtime that handed the job to
        the cluster, or by one that took over from a dead one — and never over an end that
        another runtime following the same job has recorded. In a journal, a RUNNING line
        after an end is read as nothing (a state never goes back): no need to look."""
        if self.store.journaled(job.job_id):
            return True
        try:
            on_disk = self.store.read_raw(job.job_id)
        except (UnknownJob, ValueError, OSError):
            return False
        if on_disk.terminal:
            return False
        owner = on_disk.owner_pid
        return owner == self._pid or not owner or not proc_alive(owner, on_disk.owner_start)

    # -- timeouts of callables (argv jobs time out on their worker) ----------------------------

    async def _timeouts(self) -> None:
        while True:
            if not self._deadlines:
                await self._deadline_wake.wait()
                self._deadline_wake = trio.Event()
                continue
            when, job_id = self._deadlines[0]
            if trio.current_time() < when:
                with trio.move_on_at(when):
                    await self._deadline_wake.wait()
                    self._deadline_wake = trio.Event()
                continue
            heapq.heappop(self._deadlines)
            job = self.jobs.get(job_id)
            if job is None or job.terminal:
                continue
            # Recorded first: the cancel's own echo (a cancelled future) then finds it ended.
            self._record(job, JobState.FAILED, timed_out=True, error=(
                f"timed out after {job.spec.timeout_s:g}s (cancelled on the cluster; a Python "
                "callable cannot be stopped mid-call, its worker thread runs on until it returns)"))
            await self._cancel_on_cluster(job, by="timeout")

    # -- waiting and cancelling ---------------------------------------------------------------

    async def cancel(self, job_id: str, *, grace_s: float | None = None, by: str = "") -> JobStatus:
        """Cancel on the scheduler and, for an argv job, end its process group on its worker
        (SIGTERM, SIGKILL after ``grace_s``); returns once the end is recorded."""
        job = self.known(job_id)
        if job.terminal:
            return job.status
        grace = job.grace_s if grace_s is None else grace_s
        if job_id in self._to_submit:
            self._to_submit.remove(job_id)
            self._cancel_unsubmitted(job, "cancelled before it was submitted", by)
            return job.status
        from .protocol import CancelRequest

        self.store.request_cancel(job_id, CancelRequest(by=by, grace_s=grace))
        await self._cancel_on_cluster(job, by=by, grace_s=grace)
        with trio.move_on_after(grace + 5):
            while not job.terminal:
                await self._park(job)
        if not job.terminal:  # the cluster said nothing: the cancel was asked, record it
            self._record(job, JobState.CANCELLED, cancelled_by=by, error=f"cancelled by {by or 'request'}")
        return job.status

    async def _cancel_on_cluster(self, job: Job, *, by: str, grace_s: float | None = None) -> None:
        client = await self.client()
        fut = self.futures.get(job.job_id)
        worker = job.status.worker
        grace = job.grace_s if grace_s is None else grace_s

        def go() -> None:
            if not job.spec.fn:
                try:
                    client.run(dask_worker.kill_job, job.job_id, grace, by,
                               workers=[worker] if worker else None, on_error="ignore")
                except Exception as exc:
                    log.warning("job %s: cannot reach its worker to end its processes: %s", job.job_id, exc)
            if fut is not None:
                client.cancel([fut], force=True)
            self._flush_and_unpublish(client, [job.job_id])

        await trio.to_thread.run_sync(go, abandon_on_cancel=False)
        if job.terminal:  # recorded before (a timeout): nothing will collect this future
            self.futures.pop(job.job_id, None)


class ClusterUnreachable(RuntimeError):
    """A cancel from outside a runtime could not reach the job's scheduler (one line)."""


def cancel_remote(store: JobStore, st: JobStatus, *, grace_s: float, by: str) -> JobStatus:
    """Cancel a cluster job from any process (``ag jobs cancel``, the dashboard): end an argv
    job's process group on its worker, cancel the task on the scheduler, let the scheduler
    forget it, and record CANCELLED. A live runtime holding the job sees the cancel as its
    future's end and records the same (``cancel.json`` says who asked)."""
    import cloudpickle
    from distributed import Client

    from .protocol import CancelRequest

    if not st.cluster:
        raise ClusterUnreachable(f"job {st.job_id} has no cluster address yet; cancel it from its run")
    store.request_cancel(st.job_id, CancelRequest(by=by, grace_s=grace_s))
    argv = not store.read_spec(st.job_id).fn
    cloudpickle.register_pickle_by_value(dask_worker)
    try:
        with Client(st.cluster, set_as_default=False, timeout=10) as client:
            if argv:
                client.run(dask_worker.kill_job, st.job_id, grace_s, by,
                           workers=[st.worker] if st.worker else None, on_error="ignore")
            futs = client.get_dataset([st.job_id], default=None)
            if futs[0] is not None:
                client.cancel(futs, force=True)
            client.unpublish_dataset([st.job_id])
    except (OSError, TimeoutError) as exc:
        raise ClusterUnreachable(f"cannot reach the dask scheduler at {st.cluster}: {exc}") from None
    now = store.read(st.job_id)
    if now.terminal:
        return now
    now = msgspec.structs.replace(now, state=JobState.CANCELLED, ended=time.time(), cancelled_by=by,
                                  error=f"cancelled by {by or 'request'}")
    journaled = JournaledStore(store.root.parent)  # this process's journal, for a journaled job
    journaled.write(now, fsync=True)
    journaled.writer.close()
    return now


class _SubmitFailed(Exception):
    def __init__(self, won: list[JobStatus], why: str) -> None:
        super().__init__(why)
        self.won = won
        self.why = why


class _Lost:
    def __init__(self, why: str) -> None:
        self.why = why


def _jsonable(value: Any) -> Any:
    try:
        ENCODER.encode(value)
        return value
    except (TypeError, ValueError, OverflowError):
        return repr(value)[:10000]


def _error_text(exc: BaseException | None, tb: Any) -> str:
    import traceback

    text = f"{type(exc).__name__}: {exc}" if exc is not None else "the task failed"
    if tb is not None:
        frames = "".join(traceback.format_tb(tb)[-5:])
        text += "\n" + frames
    return text[:4000]


__all__ = ["ClusterUnreachable", "DaskRunner", "ENV_SCHEDULER", "cancel_remote"]
