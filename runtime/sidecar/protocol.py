"""The wire protocol, version 1: msgspec Structs as JSON, in binary websocket frames (UTF-8
JSON; binary so that no side pays for decoding and re-encoding text).

A client's first message must be ``hello`` (with the token when the endpoint needs one); the
server answers ``welcome`` or an error and closes. After that every request carries an ``id``
and gets exactly one ``reply`` with that id, ``ok`` or an error with a machine-readable
``code``. Events arrive in ``events`` frames (batches, so a fast run costs few frames), each
event's JSON exactly as the log stores it.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from ..errors import (
    BadMessage,
    BadProtocol,
    CannotResume,
    Internal,
    InvalidAnswer,
    MessageTooLarge,
    NotAuthenticated,
    SidecarError,
    UnknownAsk,
    UnknownNode,
    UnknownRun,
)
from ..events import AnyEvent
from ..info import AskInfo, RunInfo

__all__ = ["AskInfo", "RunInfo"]  # the shapes list_runs / list_asks replies hold

PROTOCOL_VERSION = 1
# Larger client messages get an error reply; much larger ones close the connection.
MAX_MESSAGE_BYTES = 1 << 20
WS_MAX_MESSAGE_BYTES = 4 << 20


class Msg(msgspec.Struct, tag_field="op", kw_only=True, omit_defaults=True):
    pass


# -- client -> server -------------------------------------------------------------------------


class Hello(Msg, tag="hello"):
    protocol: int
    token: str = ""
    client: str = ""


class Subscribe(Msg, tag="subscribe"):
    """Events of one run (``run_id``) or of every run of this runtime (no ``run_id``).

    ``after_seq`` (with ``run_id``): only events with a larger seq — what a client that was
    dropped sends to resume without a gap. ``since``: only events at or after this time.
    ``snapshot``: first replay what the log already holds, then go live.
    """

    id: int
    run_id: str = ""
    after_seq: int = 0
    after: dict[str, int] = {}  # per run: what a dropped all-runs subscriber already has
    since: float = 0.0
    snapshot: bool = True


class Unsubscribe(Msg, tag="unsubscribe"):
    id: int
    sub: int


class Answer(Msg, tag="answer"):
    """Answer an open ask; replies ``{"answer": canonical}``, or ``unknown_ask`` /
    ``invalid_answer`` (the ask stays open)."""

    id: int
    ask_id: str
    value: str


class Cancel(Msg, tag="cancel"):
    """Cancel a run, or one node of it (``node``): ``unknown_run`` / ``unknown_node``."""

    id: int
    run_id: str
    node: str = ""
    reason: str = ""


class Retry(Msg, tag="retry"):
    """Retry a running node now (its attempt restarts): ``unknown_run`` / ``unknown_node``."""

    id: int
    run_id: str
    node: str


class Resume(Msg, tag="resume"):
    """Resume an interrupted run: the runtime starts a detached ``ag resume RUN`` process."""

    id: int
    run_id: str


class ListRuns(Msg, tag="list_runs"):
    id: int


class ListAsks(Msg, tag="list_asks"):
    id: int


ClientMsg = Union[Hello, Subscribe, Unsubscribe, Answer, Cancel, Retry, Resume, ListRuns, ListAsks]

# -- server -> client -------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, kw_only=True):
    code: str
    message: str


class Welcome(Msg, tag="welcome"):
    protocol: int
    pid: int
    host: str
    runtime_id: str


class Reply(Msg, tag="reply"):
    id: int
    ok: bool = True
    result: Any = None
    error: ErrorBody | None = None


class EventFrame(Msg, tag="events"):
    """A batch of events for subscription ``sub``, each exactly as the log stores it."""

    sub: int
    events: list[msgspec.Raw]


class DecodedEventFrame(Msg, tag="events"):
    """An ``EventFrame`` as a client reads it: its events decoded in the same pass as the
    frame (one call a frame instead of one a event, the subscriber's largest cost)."""

    sub: int
    events: list[AnyEvent]


class Live(Msg, tag="live"):
    """The snapshot of subscription ``sub`` is complete; what follows is live."""

    sub: int


class Dropped(Msg, tag="dropped"):
    """Subscription ``sub`` was ended by the server; resubscribe with ``after_seq`` per run."""

    sub: int
    reason: str
    last_seq: dict[str, int] = {}


class Error(Msg, tag="error"):
    """A message that could not be tied to a request (malformed, before hello...)."""

    code: str
    message: str


ServerMsg = Union[Welcome, Reply, EventFrame, Live, Dropped, Error]

ENCODER = msgspec.json.Encoder()
CLIENT_DECODER = msgspec.json.Decoder(ClientMsg)
SERVER_DECODER = msgspec.json.Decoder(ServerMsg)
# A client's: event frames decoded whole. A frame that fails so is read again with
# SERVER_DECODER and its events one by one, so that an error is raised where it was before.
CLIENT_SIDE_DECODER = msgspec.json.Decoder(Union[Welcome, Reply, DecodedEventFrame, Live, Dropped, Error])


# Error codes a client can act on: each is the code of one class of runtime/errors.py, which
# both ends raise (``error_body`` sends one, ``SidecarError.from_wire`` raises it again).
BAD_MESSAGE = BadMessage.code
TOO_LARGE = MessageTooLarge.code
NOT_AUTHENTICATED = NotAuthenticated.code
BAD_PROTOCOL = BadProtocol.code
UNKNOWN_RUN = UnknownRun.code
UNKNOWN_NODE = UnknownNode.code
UNKNOWN_ASK = UnknownAsk.code
INVALID_ANSWER = InvalidAnswer.code
CANNOT_RESUME = CannotResume.code
INTERNAL = Internal.code


def error_body(exc: SidecarError) -> ErrorBody:
    return ErrorBody(code=exc.code, message=str(exc))


def error_frame(exc: SidecarError) -> Error:
    return Error(code=exc.code, message=str(exc))
