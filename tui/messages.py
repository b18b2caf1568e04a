"""Every message the dashboard's parts send each other, in three groups.

- **Facts from the trio side** (``Backend``): trio tasks never touch a widget; they post one of
  these to the app, which folds it into ``DashboardState``; screens redraw from the state on
  their own tick.
- **Results of thread workers** that read the store: a worker never calls into the UI thread;
  it posts its result (and checks ``is_cancelled`` first, so a read nobody waits for any more is
  dropped, not drawn).
- **Intents** a screen posts when the person asks for something (open a run, cancel a node,
  answer an ask). They bubble up to the app, where ``aethergraph.tui.actions`` handles them:
  screens never call into the app, and every confirmation is asked in one place.

A message posted while the app is closing is dropped by Textual, so a late trio task or thread
cannot reach a widget that is gone. (Dataclasses: Textual's ``Message`` initialises itself in
``__post_init__`` for them.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from aethergraph.runtime.info import AskInfo, RunInfo

# -- facts from the trio side -----------------------------------------------------------------


@dataclass
class RuntimeAttached(Message):
    """Connected to a live runtime's sidecar and following its events."""

    runtime_id: str
    advert: Any
    runs: list[RunInfo]
    asks: list[AskInfo]


@dataclass
class RuntimeDetached(Message):
    """The connection to a runtime ended (it exited, or it could not be reached)."""

    runtime_id: str
    reason: str


@dataclass
class LiveEvents(Message):
    """A batch of live events, ``(runtime_id, event)`` in arrival order (at most ~10 a second)."""

    items: list[tuple[str, Any]]


@dataclass
class HostedRunStarted(Message):
    """``ag tui --run``: the in-process runtime is open and the run has started."""

    runtime_id: str


@dataclass
class HostedRunEnded(Message):
    """``ag tui --run``: the run this dashboard hosts has ended."""

    run_id: str
    status: str
    error: str


@dataclass
class BackendProblem(Message):
    """Something the trio side could not do on its own account (not a reply to an action)."""

    text: str
    severity: str = "error"


# -- results of thread workers ----------------------------------------------------------------


@dataclass
class IndexLoaded(Message):
    """A page of runs (and the open asks of interrupted runs) read from the index: the newest
    page (``older`` False, re-read every couple of seconds) or one more page of older runs,
    read once as the person scrolls to the end of the list. ``rows`` None: no store yet (or,
    with ``error``, the read failed)."""

    rows: list[RunInfo] | None
    has_more: bool
    offline_asks: list[AskInfo] | None
    total: int = 0
    older: bool = False
    final: bool = True  # the last page of one read of older runs
    error: str = ""


@dataclass
class RunLogRead(Message):
    """A run's whole log, read into a fresh model (``error``: why it could not be)."""

    model: Any
    error: str = ""


@dataclass
class ActionDone(Message):
    """How an action that ran in a thread worker ended, in words for the person."""

    text: str
    severity: str = "information"


@dataclass
class EarlierRead(Message):
    """The events of a run's ``name`` view ("timeline" or "log") just before ``before_seq``."""

    run_id: str
    name: str
    before_seq: int
    chunk: list[Any] = field(default_factory=list)


# -- intents: what the person asked for (handled in actions.py) -------------------------------


@dataclass
class OpenRun(Message):
    """Show this run in panel 2."""

    run_id: str


@dataclass
class AnswerRequested(Message):
    """Open the dialog that answers this ask."""

    ask_id: str


@dataclass
class AnswerSubmitted(Message):
    """A dialog's answer to send; the outcome comes back to ``dialog`` as ``AnswerDone``."""

    ask: Any
    value: str
    dialog: Any


@dataclass
class AnswerDone(Message, bubble=False):
    """What became of an ``AnswerSubmitted``: the answer the run will see, or why not."""

    outcome: Any


@dataclass
class CancelRequested(Message):
    """Cancel a run, or one node of it (``node``: its path)."""

    run_id: str
    node: str = ""


@dataclass
class RetryRequested(Message):
    """End a node's current attempt and start the next."""

    run_id: str
    node: str


@dataclass
class ResumeRequested(Message):
    """Resume an interrupted run in a process of its own."""

    run_id: str


@dataclass
class CancelJobRequested(Message):
    """Cancel a process job (``what``: its name or command, for the confirmation)."""

    job_id: str
    what: str = ""


@dataclass
class ReloadRequested(Message):
    """Read the runs list again now (and catch the index up with the logs)."""


@dataclass
class MoreRunsRequested(Message):
    """The next page of older runs (``everything``: all of them, for a filter)."""

    everything: bool = False


@dataclass
class EarlierRequested(Message):
    """The page of a run's view before ``before_seq``, read again from its log."""

    run_id: str
    name: str
    before_seq: int
