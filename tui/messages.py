"""Messages from the trio side (and from worker threads) to the UI.

Trio tasks never touch a widget: they post one of these to the app, which folds it into
``DashboardState``; screens redraw from the state on their own tick. A message posted while
the app is closing is dropped by Textual, so a late trio task cannot reach a widget that is
gone.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from aethergraph.runtime.info import AskInfo, RunInfo


class RuntimeAttached(Message):
    """Connected to a live runtime's sidecar and following its events."""

    def __init__(self, runtime_id: str, advert: Any, runs: list[RunInfo], asks: list[AskInfo]) -> None:
        super().__init__()
        self.runtime_id = runtime_id
        self.advert = advert
        self.runs = runs
        self.asks = asks


class RuntimeDetached(Message):
    """The connection to a runtime ended (it exited, or it could not be reached)."""

    def __init__(self, runtime_id: str, reason: str) -> None:
        super().__init__()
        self.runtime_id = runtime_id
        self.reason = reason


class LiveEvents(Message):
    """A batch of live events, ``(runtime_id, event)`` in arrival order (at most ~10 a second)."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.items = items


class HostedRunStarted(Message):
    """``ag tui --run``: the in-process runtime is open and the run has started."""

    def __init__(self, runtime_id: str) -> None:
        super().__init__()
        self.runtime_id = runtime_id


class HostedRunEnded(Message):
    """``ag tui --run``: the run this dashboard hosts has ended."""

    def __init__(self, run_id: str, status: str, error: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.status = status
        self.error = error


class BackendProblem(Message):
    """Something the trio side could not do on its own account (not a reply to an action)."""

    def __init__(self, text: str, severity: str = "error") -> None:
        super().__init__()
        self.text = text
        self.severity = severity


class IndexLoaded(Message):
    """A page of runs (and the open asks of interrupted runs) read from the index: the newest
    page (``older`` False, re-read every couple of seconds) or one more page of older runs,
    read once as the person scrolls to the end of the list."""

    def __init__(self, rows: list[RunInfo] | None, has_more: bool, offline_asks: list[AskInfo] | None,
                 total: int = 0, older: bool = False, final: bool = True) -> None:
        super().__init__()
        self.final = final  # the last page of one read of older runs
        self.rows = rows
        self.has_more = has_more
        self.offline_asks = offline_asks
        self.total = total
        self.older = older


class RunLoaded(Message):
    """A run's log has been read into its model (the detail screen can draw it)."""

    def __init__(self, run_id: str, error: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        self.error = error
