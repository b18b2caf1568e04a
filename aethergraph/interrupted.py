"""Runs whose process died: whether one can be resumed, answering its asks meanwhile, and
starting its resume in a process of its own.

Apart from ``resume`` (which loads the run's code again, through ``targets``) so that the API
(``api.default_config`` gives every runtime a ``Resumer``) reaches these without importing the
decorators that import the API: no import circle.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio

from aethergraph.runtime import events as ev
from aethergraph.runtime.asks import normalize_answer
from aethergraph.runtime.errors import CannotResume, RunBusy
from aethergraph.runtime.history import HOST, summarize
from aethergraph.runtime.store import owner
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events, repair_torn_tail

from .detach import DetachFailed, start_resume_async

RESUMABLE = (ev.INTERRUPTED,)


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


def answer_offline(layout: StoreLayout, ask_id: str, value: str) -> tuple[str, str]:
    """Answer an ask of a run whose process is gone: the answer is appended to the run's log
    and used when the run is resumed. Returns (run_id, canonical answer)."""
    index = Index(layout)
    try:
        index.catch_up()
        row = next((a for a in index.open_asks() if a.ask_id == ask_id), None)
    finally:
        index.close()
    if row is None:
        raise CannotResume(f"no open ask {ask_id} in this store")
    run_id = row.run_id
    path = layout.existing_run_log(run_id)
    events = read_events(path, warn=False)
    summary = summarize(run_id, events, layout)
    if summary.status != ev.INTERRUPTED:
        raise CannotResume(f"ask {ask_id} belongs to run {run_id}, which is {summary.status}")
    if ask_id not in summary.open_asks:
        raise CannotResume(f"ask {ask_id} is already closed in the log of run {run_id}")
    answer = normalize_answer(row.kind, row.options, value)
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
        event = ev.AskAnswered(run_id=run_id, seq=last + 1, ts=time.time(), node=row.node,
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
        if run_id in rt.runs:
            raise CannotResume(f"run {run_id} is running in this runtime")
        await rt.writer.wait_durable()  # read this runtime's own latest facts about the run
        events = await trio.to_thread.run_sync(read_run, rt.layout, run_id)
        check_resumable(run_id, events, rt.layout)

    async def start(self, rt: Any, run_id: str) -> dict[str, Any]:
        """Start ``ag resume RUN`` detached; returns where it runs and where its output goes."""
        try:
            d = await start_resume_async(rt.layout, run_id)
        except DetachFailed as exc:
            raise CannotResume(str(exc)) from None
        return {"run_id": run_id, "pid": d.pid, "host": d.host, "output": str(d.output),
                "started": d.started}
