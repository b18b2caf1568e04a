"""Starting a run by an id the caller chose: at most once, whatever happens in between.

``aethergraph.run(fn, run_id="nightly-2026-12-01", **inputs)`` and ``ag run --run-id ID``
behave the way durable-workflow ids do (Temporal, DBOS): the id names *the* run, not an
attempt at one.

- a new id starts the run under that id;
- an interrupted run (its process died) is resumed: replayed from its log, then continued;
- a run that ended is not run again: its recorded outputs (or its recorded failure) are the
  answer, and nothing executes;
- a run of that id executing right now is refused (``RunIdInUse``), as are inputs or a graph
  other than the ones recorded (``RunIdConflict``): the same id must mean the same work.

Allowed ids: generated ones (``20261201-203000-3fa9c1``) and ``[a-z0-9][a-z0-9._-]{0,99}``
(see ``StoreLayout.run_log``): a single path segment, so an id can never point outside the
store. Whoever starts, resumes or looks up an id first takes the run's owner lock (the same OS
lock every run's writer holds, see ``aethergraph.runtime.store.owner``), so of two starts racing for one id
one waits for nothing and the other is told the run is in use; the log itself is then created
exclusively by the writer.
"""

from __future__ import annotations

from typing import Any

import attrs
import msgspec
import trio

from aethergraph.runtime import events as ev
from aethergraph.runtime.engine import NewRun, ResumeRun, RunOutcome
from aethergraph.runtime.errors import AetherGraphError, GraphFailed, RunBusy, UnknownRun
from aethergraph.runtime.history import RunSummary, summarize
from aethergraph.runtime.ids import RUN_ID_RE
from aethergraph.runtime.journal import Journal
from aethergraph.runtime.store.layout import NAMED_RUN_ID_RE, StoreLayout
from aethergraph.runtime.store import owner
from aethergraph.runtime.store.logfile import read_events

from .interrupted import CannotResume, check_resumable


class RunIdError(AetherGraphError, ValueError):
    """A run id that cannot be used as asked (syntax, other inputs, another graph)."""


class RunIdConflict(RunIdError):
    """The id names a run of other inputs or another graph."""


class RunIdInUse(RunIdError):
    """The id's run is executing right now (or being started) in another process."""


class RecordedFailure(AetherGraphError):
    """The id's run ended badly before; it is not run again. ``ag retry ID`` starts a new
    attempt (under a new id) from its inputs."""

    def __init__(self, run_id: str, status: str, error: str) -> None:
        super().__init__(
            f"run {run_id} already ended {status.upper()}" + (f" ({error})" if error else "")
            + f"; it is not run again (`ag retry {run_id}` starts a new attempt)"
        )
        self.run_id, self.status, self.error = run_id, status, error


def check_run_id(run_id: str) -> str:
    if RUN_ID_RE.match(run_id) or NAMED_RUN_ID_RE.match(run_id):
        return run_id
    raise RunIdError(
        f"bad run id {run_id!r}: use lower-case letters, digits, '.', '_' and '-', starting with a "
        "letter or digit, at most 100 characters (e.g. nightly-2026-12-01)"
    )


def _plain(value: Any) -> Any:
    """``value`` as the log records it (JSON), for comparing with what the log holds."""
    return msgspec.json.decode(ev.ENCODER.encode(value))


@attrs.frozen
class Plan:
    action: str  # "new" | "resume" | "recorded"
    events: list = attrs.field(factory=list)
    summary: RunSummary | None = None


def plan(layout: StoreLayout, run_id: str, graph: str, inputs: dict[str, Any]) -> Plan:
    """What starting ``run_id`` means now (the caller owns the run: nobody else writes its log).
    Raises ``RunIdError``/``RunIdConflict``."""
    check_run_id(run_id)
    path = layout.run_log(run_id)
    if not path.exists():
        return Plan("new")
    events = read_events(path, warn=False)
    if not any(type(e) is ev.RunStarted for e in events):
        # A start that died before its first event was on disk (or a claim of an older
        # version): nothing of it is recorded, and we own the id now.
        path.unlink()
        return Plan("new")
    s = summarize(run_id, events)
    if s.graph != graph:
        raise RunIdConflict(f"run {run_id} is a run of graph {s.graph!r}, not {graph!r}")
    given = _plain(inputs)
    if given != s.inputs:
        raise RunIdConflict(
            f"run {run_id} was started with other inputs: recorded {_short(s.inputs)}, given {_short(given)}"
        )
    try:
        check_resumable(run_id, events, layout, owned=True)
    except CannotResume:
        return Plan("recorded", events, s)
    return Plan("resume", events, s)


def _short(value: Any, limit: int = 120) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def recorded_outcome(p: Plan, run_id: str) -> RunOutcome:
    s = p.summary
    end = next((e for e in reversed(p.events) if type(e) is ev.RunFinished), None)
    if s.status == ev.SUCCEEDED:
        return RunOutcome(run_id, s.status, s.outputs)
    if end is not None and end.error is not None and end.error.type == "GraphFailed":
        # Ended through ``Failed(...)``: the caller gets its outputs, as the first time.
        return RunOutcome(run_id, s.status, s.outputs, GraphFailed(end.error.message, s.outputs))
    return RunOutcome(run_id, s.status, s.outputs, RecordedFailure(run_id, s.status, s.error))


async def start_by_id(rt: Any, fn: Any, run_id: str, inputs: dict[str, Any], *,
                      entrypoint: str | None = None) -> tuple[RunOutcome, str]:
    """Start, resume or look up the run ``run_id`` of ``fn`` in ``rt``; returns the outcome and
    which it was: ``"started"``, ``"resumed"`` or ``"recorded"`` (nothing ran)."""
    layout = rt.layout
    check_run_id(run_id)
    if run_id in rt.runs:
        raise RunIdInUse(f"run {run_id} is running in this runtime")
    try:
        owner.acquire(layout, run_id)
    except RunBusy as exc:
        raise RunIdInUse(f"{exc}; `ag attach {run_id}` follows it") from None
    try:
        p = await trio.to_thread.run_sync(plan, layout, run_id, fn.name, inputs)
        if p.action == "recorded":
            return recorded_outcome(p, run_id), "recorded"
        if p.action == "resume":
            journal = Journal.from_events(run_id, p.events)
            outcome = await fn.start_run(rt, journal.inputs, entrypoint=entrypoint or journal.entrypoint,
                                         start=ResumeRun(journal))
            return outcome, "resumed"
        outcome = await fn.start_run(rt, inputs, entrypoint=entrypoint, start=NewRun(run_id))
        return outcome, "started"
    finally:
        if not rt.writer.is_open(run_id):  # else its writer lets go at the run's end
            owner.release(layout, run_id)


__all__ = ["RecordedFailure", "RunIdConflict", "RunIdError", "RunIdInUse", "UnknownRun", "check_run_id",
           "start_by_id"]
