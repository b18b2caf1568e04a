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
from aethergraph.runtime.engine import ResumeRun, RetryRun
from aethergraph.runtime.errors import RunBusy, UnknownRun
from aethergraph.runtime.history import summarize
from aethergraph.runtime.journal import Journal
from aethergraph.runtime.store import owner

from .interrupted import CannotResume, Resumer, answer_offline, check_resumable, read_run
from .targets import load_target

__all__ = ["CannotResume", "Resumer", "UnknownRun", "answer_offline", "check_resumable", "read_run", "resume",
           "retry"]


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
    return await fn.start_run(rt, summary.inputs, entrypoint=summary.entrypoint,
                              start=RetryRun(of=run_id, journal=journal))
