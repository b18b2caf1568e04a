"""The job protocol: what a job is (``JobSpec``), what is known about it (``JobStatus``).

Every runner speaks it (local processes; a dask cluster). Both cross files and pipes — lines of
the store's job journals, the job host's input (``spec.json`` and ``state.json`` in the job's
folder for jobs of an earlier version) — so they are msgspec Structs, decoded strictly: a
hand-edited or torn line is an error, never a guess.

A job's life: QUEUED (accepted, waiting for a slot) → RUNNING (its process exists) → one of
SUCCEEDED (exit 0), FAILED (non-zero exit, killed by a signal nobody asked for, timed out, or
could not start), CANCELLED (someone asked) — or LOST: its supervisor is gone without having
written how the job ended, so nobody knows.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST})


class JobSpecError(ValueError):
    """A job spec that cannot describe a job (one line, says which field)."""


class JobSpec(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A process to run. ``argv[0]`` is looked up on ``PATH``; no shell unless ``shell=True``
    (then ``argv`` is one command line for ``/bin/sh -c``).

    Or, on a cluster runner only (``DaskJobs``), an importable Python callable:
    ``fn="pkg.module:function"`` called with ``args`` and ``kwargs`` (JSON values: they are
    written to ``spec.json``). ``resources`` (e.g. ``{"GPU": 1}``) and ``priority`` are the
    cluster's; a local runner refuses them rather than ignore them."""

    argv: list[str] = []
    fn: str = ""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    resources: dict[str, float] = {}
    priority: int = 0
    name: str = ""
    cwd: str | None = None
    # Added to (or, with inherit_env=False, instead of) the environment of the submitter.
    env: dict[str, str] = {}
    inherit_env: bool = True
    shell: bool = False
    # The supervisor kills the job after this long (SIGTERM, SIGKILL after grace_s): FAILED.
    timeout_s: float | None = None
    # How long a cancelled or timed-out job gets between SIGTERM and SIGKILL.
    grace_s: float = 5.0

    def validate(self) -> JobSpec:
        if self.fn:
            if self.argv:
                raise JobSpecError("job spec: give argv (a program) or fn (a callable), not both")
            mod, sep, attr = self.fn.partition(":")
            if not sep or not all(p.isidentifier() for p in mod.split(".") + attr.split(".")):
                raise JobSpecError(f"job spec: fn must be 'pkg.module:function', got {self.fn!r}")
            if self.shell:
                raise JobSpecError("job spec: shell=True is for argv, not fn")
            return self._validate_limits()
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise JobSpecError("job spec: argv must be a non-empty list of strings")
        if self.shell and len(self.argv) != 1:
            raise JobSpecError("job spec: with shell=True, argv must be exactly one command line")
        if any("\x00" in a for a in self.argv):
            raise JobSpecError("job spec: argv must not contain NUL characters")
        return self._validate_limits()

    def _validate_limits(self) -> JobSpec:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise JobSpecError(f"job spec: timeout_s must be > 0, got {self.timeout_s!r}")
        if not self.grace_s >= 0:
            raise JobSpecError(f"job spec: grace_s must be >= 0, got {self.grace_s!r}")
        return self

    @classmethod
    def coerce(cls, spec: Any) -> JobSpec:
        """A JobSpec from a JobSpec, a dict of its fields, or a bare argv list."""
        if isinstance(spec, cls):
            return spec.validate()
        if isinstance(spec, (list, tuple)):
            spec = {"argv": list(spec)}
        if not isinstance(spec, dict):
            raise JobSpecError(f"job spec must be a JobSpec, a dict or an argv list, got {type(spec).__name__}")
        try:
            return msgspec.convert(spec, cls).validate()
        except msgspec.ValidationError as exc:
            raise JobSpecError(f"job spec: {exc}") from None


class _JobFacts(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a job's record and its status both say: which job, whose (the run and node that
    submitted it, under which key), and who took it out of the queue."""

    job_id: str
    runner: str = "process"
    run_id: str = ""
    node: str = ""
    key: str = ""
    submitted: float = 0.0
    # The runtime that took the job out of the queue to start it (pid, start time).
    owner_pid: int = 0
    owner_start: int = 0
    # Cluster jobs (runner "dask"): the scheduler's address.
    cluster: str = ""


class JobRecord(_JobFacts, kw_only=True, omit_defaults=True):
    """What was submitted, by whom, when (a journal line; ``spec.json`` of an earlier version).
    Written once, before anything else can know the job; a job with a record and no state yet
    is QUEUED — claimed already
    when the record names an owner (cluster jobs: the runtime that submits them hands them over
    itself, at once, so the claim is in the record and not a file of its own)."""

    spec: JobSpec

    def queued(self) -> JobStatus:
        facts = {f: getattr(self, f) for f in _JobFacts.__struct_fields__}
        return JobStatus(state=JobState.QUEUED, name=self.spec.name, **facts)


class Rusage(msgspec.Struct, kw_only=True):
    user_s: float = 0.0
    system_s: float = 0.0
    max_rss_kb: int = 0


class JobStatus(_JobFacts, kw_only=True, omit_defaults=True):
    """What a state line of the journals holds (``state.json`` of an earlier version), and
    what ``status()`` returns.

    First written by whoever takes the job out of the queue — the job host starting it (QUEUED,
    naming the runtime as ``owner`` and itself as supervisor) or a cancel before the start
    (CANCELLED) — and from then on only by the job's supervisor; each line whole, and readers
    merge the journals so that a state never goes back."""

    state: JobState
    name: str = ""
    started: float | None = None
    ended: float | None = None
    # The job's process (leader of its process group) and its start time in clock ticks since
    # boot (/proc/<pid>/stat field 22): a pid alone may name another process by now.
    pid: int = 0
    pid_start: int = 0
    supervisor_pid: int = 0
    supervisor_start: int = 0
    exit_code: int | None = None
    signal: int | None = None
    error: str = ""
    # For a job that succeeded: the last line of its stdout (the convention for a small result);
    # for a callable (DaskJobs), the value it returned (JSON; its repr if it is not JSON).
    result: Any = None
    rusage: Rusage | None = None
    # Who asked for the cancel, when one was asked ("" otherwise); why the job timed out.
    cancelled_by: str = ""
    timed_out: bool = False
    # Cluster jobs: the worker that runs the job. There is no local pid: the process is on
    # another host, and signals go through the cluster.
    worker: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def poll_dict(self) -> dict[str, Any]:
        """The seed tutorial's ``poll()`` shape, plus what a process job adds."""
        return {
            "status": self.state.value,
            "result": self.result,
            "error": self.error or None,
            "exit_code": self.exit_code,
            "job_id": self.job_id,
        }


class CancelRequest(msgspec.Struct, kw_only=True):
    """``cancel.json``: written before the supervisor is signalled, read by it."""

    by: str = ""
    grace_s: float = 5.0


RECORD_DECODER = msgspec.json.Decoder(JobRecord)
STATUS_DECODER = msgspec.json.Decoder(JobStatus)
CANCEL_DECODER = msgspec.json.Decoder(CancelRequest)
ENCODER = msgspec.json.Encoder()
