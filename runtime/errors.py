"""Exceptions the engine raises into user code and to callers of a run."""

from __future__ import annotations


class AetherGraphError(Exception):
    """Base class for errors raised by the engine."""


class NodeCancelled(AetherGraphError):
    """A node was cancelled from outside (a person, Ctrl-C, or its run being cancelled).

    Raised to the caller of the node. If it propagates out of the calling node, that node ends
    CANCELLED as well: cancellation is a decision someone took, not a failure of the code.
    """

    def __init__(self, path: str, reason: str, by: str = "") -> None:
        super().__init__(f"node {path} cancelled: {reason}" + (f" (by {by})" if by else ""))
        self.path = path
        self.reason = reason
        self.by = by


class NodeTimeout(AetherGraphError, TimeoutError):
    """A node did not finish within its ``timeout_s`` (after all its attempts)."""

    def __init__(self, path: str, timeout_s: float, attempts: int = 1) -> None:
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"node {path} timed out after {timeout_s:g}s{tries}")
        self.path = path
        self.timeout_s = timeout_s
        self.attempts = attempts


class PollTimeout(AetherGraphError, TimeoutError):
    """A polling loop reached its deadline before the condition held."""


class AskError(AetherGraphError):
    """Base class for errors of asks."""


class NoAnswerAvailable(AskError):
    """An ask cannot be answered: stdin is not a terminal and no answer was supplied."""


class InvalidAnswer(AskError, ValueError):
    """An answer that does not fit the ask (not one of the options, or empty text)."""


class AskTimeout(AskError, TimeoutError):
    """An ask's ``timeout_s`` passed without an answer."""

    def __init__(self, ask_id: str, timeout_s: float) -> None:
        super().__init__(f"ask {ask_id} got no answer within {timeout_s:g}s")
        self.ask_id = ask_id
        self.timeout_s = timeout_s


class StoreError(AetherGraphError):
    """The store refused an operation (bad name, unknown ref, unreadable file)."""


class UnknownRun(StoreError, KeyError):
    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"unknown run id: {self.run_id}"


class GraphFailed(AetherGraphError):
    """A node returned ``Failed(...)``: it chose to end FAILED (its outputs are kept)."""

    def __init__(self, message: str, outputs: object = None) -> None:
        super().__init__(message)
        self.outputs = outputs


class RunBusy(StoreError):
    """Another live process (or this one) already owns the run's log."""

    def __init__(self, run_id: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"run {run_id} is already being run by {who} on this host")
        self.run_id = run_id
        self.pid = pid


class StoreWriteError(StoreError, OSError):
    """A run's events could not be written to its log (disk full, I/O error, too many open
    files, a log that already exists). The run fails; nothing it lost is reported durable."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        if errno is not None:
            self.errno = errno
