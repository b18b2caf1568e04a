"""One vocabulary of facts.

Every fact the runtime knows is one of the Structs below, in a single tagged union keyed by
``type``. An event is encoded once, by one reused encoder, and those bytes are what the log
stores and (later) what the sidecar sends; readers decode with one reused decoder.

Every event carries ``run_id``, ``node`` (the node path, empty for run-level facts), ``seq``
(position in its run's log, from 1) and ``ts`` (seconds since the epoch).
"""

from __future__ import annotations

import traceback
from typing import Any, Union

import msgspec

# Terminal states of a node or a run. CANCELLED and TIMED_OUT are states of their own: a person
# who cancelled a stuck job must not later read it as a failure of the job.
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
RUNNING = "running"
# Derived, never written: a run whose process died before it wrote a terminal event.
INTERRUPTED = "interrupted"

TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, TIMED_OUT})


class ErrorInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        """How every front end says it in one line: ``Type: message``."""
        return f"{self.type}: {self.message}"


class Event(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True, gc=False):
    run_id: str
    seq: int = 0
    ts: float = 0.0
    node: str = ""


class RunStarted(Event, tag="run_started"):
    graph: str
    inputs: dict[str, Any] = {}
    entrypoint: str = ""
    pid: int = 0
    host: str = ""
    durability: str = ""
    attempt_of: str = ""


class RunResumed(Event, tag="run_resumed"):
    """The run continues in a new process (``ag resume``) after its old one died."""

    attempt: int
    pid: int = 0
    host: str = ""
    replayable_steps: int = 0


class RunFinished(Event, tag="run_finished"):
    status: str
    outputs: Any = None
    error: ErrorInfo | None = None
    duration_s: float = 0.0


class NodeStarted(Event, tag="node_started"):
    name: str
    kind: str  # "graph_fn" | "tool"
    inputs: dict[str, Any] = {}
    parent: str = ""
    # The node's key: what the code asked for (parent key/name:args hash[#n]); see runtime.journal.
    step: str = ""


class NodeFinished(Event, tag="node_finished"):
    outputs: Any = None
    attempt: int = 1
    duration_s: float = 0.0


class NodeFailed(Event, tag="node_failed"):
    error: ErrorInfo
    # Set when the node returned ``Failed(message, outputs)``: it ended FAILED on purpose.
    outputs: Any = None
    attempt: int = 1
    duration_s: float = 0.0


class NodeCancelled(Event, tag="node_cancelled"):
    reason: str
    by: str = ""
    attempt: int = 1
    duration_s: float = 0.0


class NodeTimedOut(Event, tag="node_timed_out"):
    timeout_s: float
    attempt: int = 1
    duration_s: float = 0.0


class AttemptRetried(Event, tag="attempt_retried"):
    """Attempt ``attempt`` ended and attempt ``attempt + 1`` starts after ``delay_s``."""

    attempt: int
    delay_s: float = 0.0
    error: ErrorInfo | None = None
    requested_by: str = ""


class Embedding(msgspec.Struct, kw_only=True, gc=False):
    """A record's vector for ``memory().search``: unit length, float32 little-endian, by the
    embedder named ``model`` (the one bound with ``memory().bind_embedder``)."""

    model: str
    vector: bytes


class MemoryRecorded(Event, tag="memory_recorded"):
    event_id: str
    kind: str
    graph: str = ""
    data: Any = None
    # Tuples, not lists: an empty default then costs no allocation, which matters at 100k/s.
    tags: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    severity: int = 2
    stage: str = ""
    topic: str = ""
    text: str = ""
    inputs_ref: Any = None
    outputs_ref: Any = None
    inputs: Any = None
    outputs: Any = None
    metrics: dict[str, float] | None = None
    sources: tuple[str, ...] = ()
    # Only for kinds bound to an embedder; computed after the event_id (it is derived data).
    embedding: Embedding | None = None

    # Upstream names, so code written against upstream reads the same fields.
    @property
    def node_id(self) -> str:
        return self.node

    @property
    def graph_id(self) -> str:
        return self.graph


class ArtifactWritten(Event, tag="artifact_written"):
    ref: str
    sha256: str
    name: str
    size: int
    event_id: str = ""
    mime: str = ""
    kind: str = ""
    tool: str = ""
    labels: dict[str, Any] = {}
    metrics: dict[str, float] = {}


class ArtifactPinned(Event, tag="artifact_pinned"):
    """An artifact marked as one to keep (pinned artifacts are never cleaned up)."""

    ref: str
    sha256: str
    pinned: bool = True


class FileAskSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a ``files`` ask accepts: name patterns (``*.csv``, ``.png``) or mime patterns
    (``image/*``); more than one file; at most ``max_bytes`` per file."""

    accept: list[str] = []
    multiple: bool = False
    max_bytes: int = 0


class AskOpened(Event, tag="ask_opened"):
    ask_id: str
    ask_kind: str  # "text" | "approval" | "choice" | "files"
    prompt: str
    options: list[str] = []  # for a files ask: its accept patterns
    timeout_s: float | None = None
    files: FileAskSpec | None = None


class AskAnswered(Event, tag="ask_answered"):
    ask_id: str
    answer: str
    by: str = ""


class AskExpired(Event, tag="ask_expired"):
    """The ask closed without an answer: its deadline passed ("timeout"), no channel could
    answer it ("unanswerable"), or its node stopped waiting ("cancelled")."""

    ask_id: str
    timeout_s: float | None = None
    reason: str = "timeout"


class MessageSent(Event, tag="message_sent"):
    text: str
    message_id: str = ""
    channel: str = "console"
    kind: str = "text"
    data: Any = None


class StreamDelta(Event, tag="stream_delta"):
    """Text a ``channel().stream()`` said, coalesced: the stream's text is now its text up to
    ``offset`` followed by ``text`` (an offset short of the end replaces the rest: a resumed
    stream that says something else). The stream ends with a ``message_sent`` of kind
    ``"stream"`` carrying the whole text and ``data={"stream": stream_id}``."""

    stream_id: str
    offset: int
    text: str
    channel: str = "console"


class Log(Event, tag="log"):
    level: str
    message: str
    logger: str = ""


class Progress(Event, tag="progress"):
    progress_id: str
    title: str = ""
    state: str = "update"  # "start" | "update" | "end"
    current: float = 0.0
    total: float | None = None
    subtitle: str = ""


class JobSubmitted(Event, tag="job_submitted"):
    """A node handed a job to a runner (``context.jobs().submit``). The job's output is in the
    store (``jobs/<job_id>/``), never in the run's log; ``argv`` is untrusted text."""

    job_id: str
    runner: str = "process"
    name: str = ""
    key: str = ""
    argv: tuple[str, ...] = ()


class JobStateChanged(Event, tag="job_state"):
    """A job's state as a runtime saw it change (queued, running, succeeded, failed,
    cancelled, lost); ``note`` says why it was seen, e.g. "reattached" after a resume."""

    job_id: str
    state: str
    exit_code: int | None = None
    signal: int | None = None
    error: str = ""
    pid: int = 0
    started: float | None = None
    ended: float | None = None
    note: str = ""


class DagNode(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One node of a static graph: its id (its path under the graph node), what it calls, and
    the ids it waits for (``after``: the ones it waits for without taking their data)."""

    id: str
    name: str
    kind: str = "tool"
    deps: list[str] = []
    after: list[str] = []


class GraphPlanned(Event, tag="graph_planned"):
    """A static graph (``@graphify``) is about to run under node ``node``: its whole shape, so a
    reader can show the nodes that have not started (or never will) next to those that did."""

    nodes: list[DagNode] = []
    max_concurrency: int | None = None
    on_error: str = "stop"


AnyEvent = Union[
    RunStarted,
    RunResumed,
    RunFinished,
    NodeStarted,
    NodeFinished,
    NodeFailed,
    NodeCancelled,
    NodeTimedOut,
    AttemptRetried,
    MemoryRecorded,
    ArtifactWritten,
    ArtifactPinned,
    AskOpened,
    AskAnswered,
    AskExpired,
    MessageSent,
    Log,
    Progress,
    JobSubmitted,
    JobStateChanged,
    GraphPlanned,
    StreamDelta,
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls for cls in AnyEvent.__args__  # type: ignore[attr-defined]
}


def _encode_unknown(obj: Any) -> Any:
    """Values msgspec cannot encode are recorded by their repr, never pickled.

    A node may take or return arbitrary Python objects; the log keeps a readable trace of them
    rather than refusing to run. Only JSON-shaped values round-trip through a resume.
    """
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    return {"__repr__": repr(obj)[:500], "__type__": type(obj).__qualname__}


# One encoder and one decoder for the whole process: they are reused for every event because
# building them is the expensive part of msgspec.
ENCODER = msgspec.json.Encoder(enc_hook=_encode_unknown)
DECODER = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    return ENCODER.encode(event)


def decode(line: bytes | str) -> Event:
    return DECODER.decode(line)


def error_info(exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
    tb = "".join(traceback.format_exception(exc)) if with_traceback else ""
    return ErrorInfo(type=type(exc).__qualname__, message=str(exc), traceback=tb)
