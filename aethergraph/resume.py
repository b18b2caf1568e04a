"""Durable execution: resume a run whose process died, retry one that ended badly.

``resume``: the same run continues in its own log. The entrypoint it recorded is imported again
and re-executed from the top with the recorded inputs; what the journal holds is replayed —
tool results are returned without running the tool, answered asks are not asked again, memory,
artifacts and messages already recorded are not recorded twice — and a pending ask is re-opened
under its id. Code that now calls other tools than the journal holds stops with ``Divergence``.

``retry``: a new run, linked to the old one (``attempt_of``), from the old run's inputs; its
successful tool results are replayed unless ``fresh``.

Only ``@tool`` calls are journaled. A service call becomes durable by wrapping it in a tool,
and exactly-once by passing the tool's ``context.idempotency_key`` to the service, which then
recognises a call it already served (a crash can strike after the service acted but before the
result reached the log).
"""

from __future__ import annotations

from typing import Any

from aethergraph.runtime import events as ev
from aethergraph.runtime.errors import AetherGraphError, RunBusy, UnknownRun
from aethergraph.runtime.history import summarize
from aethergraph.runtime.journal import Journal
from aethergraph.runtime.store import owner
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events

from .targets import load_target

RESUMABLE = (ev.INTERRUPTED,)


class CannotResume(AetherGraphError):
    pass


def read_run(layout: StoreLayout, run_id: str) -> list[ev.Event]:
    return read_events(layout.existing_run_log(run_id), warn=False)


def check_resumable(
    run_id: str, events: list[ev.Event], layout: StoreLayout | None = None, *, owned: bool = False
) -> None:
    """Refuse with a clear ``CannotResume`` unless the run can be resumed. ``owned``: this
    process holds the run's owner lock, so a log that still says "running" was interrupted."""
    summary = summarize(run_id, events, None if owned else layout)
    if owned and summary.status in (ev.RUNNING, ev.INTERRUPTED):
        return
    if summary.status in RESUMABLE:
        return
    if summary.status == ev.FAILED and summary.error.startswith("Divergence:"):
        return  # the code was fixed (or reverted) after a divergence: try again
    if summary.status == ev.RUNNING:
        raise CannotResume(f"run {run_id} is still running (pid {summary.pid} on {summary.host})")
    if summary.status == ev.SUCCEEDED:
        raise CannotResume(f"run {run_id} succeeded; there is nothing to resume")
    raise CannotResume(
        f"run {run_id} ended {summary.status}; `ag retry {run_id}` starts a new attempt from its inputs"
    )


async def resume(rt: Any, run_id: str, *, fn: Any = None) -> Any:
    """Resume an interrupted run in ``rt``; returns its ``RunOutcome``.

    Ownership first: the run's owner lock is taken before its log is read, so of two resumes
    of one run the second refuses (``CannotResume``: "already being run by pid N"), and the
    log read is the one the resume appends to. The run's writer lets go of it at the end."""
    layout = rt.layout
    if run_id in rt.runs:
        raise CannotResume(f"run {run_id} is running in this runtime")
    layout.run_log(run_id)  # a malformed id is an unknown run, not a lock to take
    try:
        owner.acquire(layout, run_id)
    except RunBusy as exc:
        raise CannotResume(str(exc)) from None
    started = False
    try:
        events = read_run(layout, run_id)
        check_resumable(run_id, events, layout, owned=True)
        journal = Journal.from_events(run_id, events)
        fn = fn or load_target(journal.entrypoint)
        from aethergraph.runtime.engine import ResumeRun  # loaded by now; ``ag answer`` never needs it

        started = True
        return await fn.start_run(rt, journal.inputs, entrypoint=journal.entrypoint, start=ResumeRun(journal))
    finally:
        if not started:
            owner.release(layout, run_id)


async def retry(rt: Any, run_id: str, *, fresh: bool = False, fn: Any = None) -> Any:
    """A new run from the recorded inputs of a run that failed, was cancelled or timed out."""
    events = read_run(rt.layout, run_id)
    summary = summarize(run_id, events, rt.layout)
    if summary.status in (ev.RUNNING,):
        raise CannotResume(f"run {run_id} is still running; cancel it first (ag cancel {run_id})")
    journal = None if fresh else Journal.from_events(run_id, events, tools_only=True)
    fn = fn or load_target(summary.entrypoint)
    from aethergraph.runtime.engine import RetryRun  # loaded by now; ``ag answer`` never needs it

    return await fn.start_run(rt, summary.inputs, entrypoint=summary.entrypoint,
                              start=RetryRun(of=run_id, journal=journal))


__all__ = ["CannotResume", "UnknownRun", "resume", "retry"]


def answer_offline(layout: StoreLayout, ask_id: str, value: str) -> tuple[str, str]:
    """Answer an ask of a run whose process is gone: the answer is appended to the run's log
    and used when the run is resumed. Returns (run_id, canonical answer)."""
    import os
    import time

    from aethergraph.runtime.asks import normalize_answer
    from aethergraph.runtime.history import HOST
    from aethergraph.runtime.store.index import Index
    from aethergraph.runtime.store.logfile import repair_torn_tail

    index = Index(layout)
    try:
        index.catch_up()
        row = next((a for a in index.open_asks() if a["ask_id"] == ask_id), None)
    finally:
        index.close()
    if row is None:
        raise CannotResume(f"no open ask {ask_id} in this store")
    run_id = row["run_id"]
    path = layout.existing_run_log(run_id)
    events = read_events(path, warn=False)
    summary = summarize(run_id, events, layout)
    if summary.status != ev.INTERRUPTED:
        raise CannotResume(f"ask {ask_id} belongs to run {run_id}, which is {summary.status}")
    if ask_id not in summary.open_asks:
        raise CannotResume(f"ask {ask_id} is already closed in the log of run {run_id}")
    answer = normalize_answer(row["kind"], row["options"], value)
    # Appending makes this process the log's writer for a moment: it must own the run (a
    # resume that started meanwhile owns it, and then this refuses).
    try:
        owner.acquire(layout, run_id)
    except RunBusy as exc:
        raise CannotResume(f"ask {ask_id}: {exc}") from None
    try:
        events = read_events(path, warn=False)
        again = summarize(run_id, events)  # we own it: "running" in the log means interrupted
        if again.status not in (ev.RUNNING, ev.INTERRUPTED) or ask_id not in again.open_asks:
            raise CannotResume(f"ask {ask_id} of run {run_id} is no longer open")
        repair_torn_tail(path)
        last = max((e.seq for e in events), default=0)
        event = ev.AskAnswered(run_id=run_id, seq=last + 1, ts=time.time(), node=row["node"],
                               ask_id=ask_id, answer=answer, by=f"ag answer (offline, {HOST})")
        with open(path, "ab") as f:
            f.write(ev.encode(event) + b"\n")
            f.flush()
            os.fsync(f.fileno())
    finally:
        owner.release(layout, run_id)
    return run_id, answer


class Resumer:
    """Lets a runtime start resumes on request (the sidecar's ``resume`` command).

    The run is never hosted in the asking runtime: that process has other services, another
    terminal and a lifetime of its own (it may be an unrelated ``ag run`` about to end). It
    starts a detached ``ag resume RUN`` process instead (see ``aethergraph.detach``)."""

    async def check(self, rt: Any, run_id: str) -> None:
        import trio

        if run_id in rt.runs:
            raise CannotResume(f"run {run_id} is running in this runtime")
        await rt.writer.wait_durable()  # read this runtime's own latest facts about the run
        events = await trio.to_thread.run_sync(read_run, rt.layout, run_id)
        check_resumable(run_id, events, rt.layout)

    async def start(self, rt: Any, run_id: str) -> dict[str, Any]:
        """Start ``ag resume RUN`` detached; returns where it runs and where its output goes."""
        from .detach import DetachFailed, start_resume_async

        try:
            d = await start_resume_async(rt.layout, run_id)
        except DetachFailed as exc:
            raise CannotResume(str(exc)) from None
        return {"run_id": run_id, "pid": d.pid, "host": d.host, "output": str(d.output),
                "started": d.started}
