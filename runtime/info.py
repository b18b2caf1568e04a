"""A run and an ask as everything above the engine sees them: one shape each.

``RunInfo`` is a run's row: what the index returns, what a live runtime's sidecar sends, what
``ag runs`` prints and the dashboard holds (``history.RunSummary``, a run read from its log, is
a ``RunInfo`` with its node tree, inputs and outputs). ``AskInfo`` is an open ask, the same way:
the index's, the sidecar's, ``ag asks``'s, the dashboard's inbox, and what ``PendingAsk`` (the
engine's waiting ask) describes. msgspec Structs: they cross the socket and the CLI's ``--json``
as they are.

The rules every holder shares live here too: how long a run took (``RunInfo.duration``) and
which asks an event closes (``track_asks``).
"""

from __future__ import annotations

import msgspec

from . import events as ev


class RunInfo(msgspec.Struct, kw_only=True):
    run_id: str
    graph: str = ""
    status: str = ev.RUNNING
    started: float | None = None
    finished: float | None = None
    last_ts: float | None = None  # the last event's time (an interrupted run ended there)
    last_seq: int = 0
    events: int = 0
    pid: int = 0
    host: str = ""
    entrypoint: str = ""
    attempt_of: str = ""
    error: str = ""  # "Type: message" of a failed run
    pending_asks: int = 0
    jobs: int = 0  # process jobs it submitted (runtime/jobs)
    # Paths of its nodes: the running ones, as a live runtime lists them (a RunSummary keeps
    # each node's summary by path here instead).
    nodes: list[str] = []
    # The live runtime executing it ("" when none is known to).
    runtime_id: str = ""

    def duration(self, now: float, status: str | None = None) -> float | None:
        """How long the run took: the one rule for ``ag runs``, ``ag show`` and the dashboard.

        Finished: start to finish. Running: start to ``now``. Neither (interrupted: its
        process died): start to the last event in its log, whoever wrote it (an answer given
        while it was down counts: it is in the log the resume will read). ``status``: what the
        run is known to be when its record says otherwise (a "running" one whose owner died)."""
        started = self.started
        if started is None:
            return None
        if self.finished is not None:
            return self.finished - started
        if (status or self.status) == ev.RUNNING:
            return now - started
        return (self.last_ts if self.last_ts is not None else started) - started


class AskInfo(msgspec.Struct, kw_only=True):
    ask_id: str
    run_id: str
    node: str
    kind: str  # "text" | "approval" | "choice" | "files"
    prompt: str
    options: list[str] = []  # for a files ask: its accept patterns
    timeout_s: float | None = None
    opened: float = 0.0
    files: ev.FileAskSpec | None = None  # what a files ask takes, when known
    # The live runtime that can take its answer now; "" when its run is not live (interrupted:
    # an answer then waits in the run's log for its resume).
    runtime_id: str = ""

    @classmethod
    def of(cls, e: ev.AskOpened, runtime_id: str = "") -> AskInfo:
        return cls(ask_id=e.ask_id, run_id=e.run_id, node=e.node, kind=e.ask_kind, prompt=e.prompt,
                   options=list(e.options), timeout_s=e.timeout_s, opened=e.ts, files=e.files,
                   runtime_id=runtime_id)

    def remaining(self, now: float) -> float | None:
        """Seconds left to answer it (None: no deadline)."""
        if self.timeout_s is None:
            return None
        return max(0.0, self.opened + self.timeout_s - now)


def track_asks(asks: dict[str, AskInfo], e: ev.Event, runtime_id: str = "") -> bool:
    """Keep ``asks`` (ask id -> AskInfo) to those still open after ``e``: ``ask_opened`` opens
    one, an answer or an expiry closes it, and a finished run closes all of its own (nobody can
    answer them any more). The one reading of it, for a run's log (``RunSummary``) and the
    dashboard; the index writes the same rule into its table. True when ``asks`` changed."""
    t = type(e)
    if t is ev.AskOpened:
        asks[e.ask_id] = AskInfo.of(e, runtime_id)
        return True
    if t is ev.AskAnswered or t is ev.AskExpired:
        return asks.pop(e.ask_id, None) is not None
    if t is ev.RunFinished:
        closed = [k for k, a in asks.items() if a.run_id == e.run_id]
        for k in closed:
            del asks[k]
        return bool(closed)
    return False
