"""Exceptions the engine raises into user code and to callers of a run."""

from __future__ import annotations

from typing import ClassVar


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




class AskTimeout(AskError, TimeoutError):
    """An ask's ``timeout_s`` passed without an answer."""

    def __init__(self, ask_id: str, timeout_s: float) -> None:
        super().__init__(f"ask {ask_id} got no answer within {timeout_s:g}s")
        self.ask_id = ask_id
        self.timeout_s = timeout_s


class StoreError(AetherGraphError):
    """The store refused an operation (bad name, unknown ref, unreadable file)."""




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


# -- what a client of the sidecar can be told -------------------------------------------------
#
# One class per protocol error code (runtime/sidecar/protocol.py): the server sends the code
# and message of the error it raised, and the client raises the class of that code again, so
# both ends (and the CLI and dashboard above them) speak one vocabulary. Some are raised by the
# runtime itself as well (``UnknownRun`` by the store, ``InvalidAnswer`` by the asks): the
# sidecar passes those on as they are.


class SidecarError(AetherGraphError):
    """An error a client of the sidecar can get; ``code`` names it on the wire."""

    code: ClassVar[str] = "internal"
    by_code: ClassVar[dict[str, type[SidecarError]]] = {}

    def __init_subclass__(cls, code: str = "", **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if code:
            cls.code = code
            SidecarError.by_code.setdefault(code, cls)

    def __str__(self) -> str:
        # The message as given (KeyError, a base of some, would show its repr).
        return str(self.args[0]) if self.args else ""

    @staticmethod
    def from_wire(code: str, message: str) -> SidecarError:
        """The error a reply with ``code`` stands for, as the class that raised it (an unknown
        code, from a newer runtime: the base class, the code kept)."""
        cls = SidecarError.by_code.get(code)
        err = Exception.__new__(cls or SidecarError)
        Exception.__init__(err, message)
        if cls is None:
            err.code = code  # type: ignore[misc]
        return err


class Internal(SidecarError, code="internal"):
    """A request failed on a bug of the runtime's (the server logs it)."""


class BadMessage(SidecarError, code="bad_message"):
    """A message the server could not read or did not expect."""


class MessageTooLarge(SidecarError, code="too_large"):
    """A message over the protocol's size limit."""


class NotAuthenticated(SidecarError, code="not_authenticated"):
    """No hello first, or a wrong or missing token."""


class BadProtocol(SidecarError, code="bad_protocol"):
    """The client speaks a protocol version this runtime does not."""


class ConnectionLost(SidecarError, code="closed"):
    """The connection closed (or was closed) before the request was answered."""


class NoRuntime(SidecarError, code="no_runtime"):
    """No live runtime could be reached (or none has what was asked for)."""


class UnknownRun(StoreError, SidecarError, KeyError, code="unknown_run"):
    """No run with this id (in this store, or running in this runtime)."""

    run_id = ""  # (not said on the wire)

    def __init__(self, run_id: str, message: str = "") -> None:
        super().__init__(message or f"unknown run id: {run_id}")
        self.run_id = run_id


class UnknownNode(SidecarError, code="unknown_node"):
    """The run has no running node with this path (to cancel or retry)."""


class UnknownAsk(AskError, SidecarError, KeyError, code="unknown_ask"):
    """No open ask with this id (never opened here, or answered or closed already)."""


class InvalidAnswer(AskError, SidecarError, ValueError, code="invalid_answer"):
    """An answer that does not fit the ask (not one of the options, or empty text)."""


class CannotResume(SidecarError, code="cannot_resume"):
    """A run that cannot be resumed (or an ask answered offline) now, and why."""
