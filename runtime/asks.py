"""Asks: questions a node puts to a person, answered by whichever channel answers first.

An ask gets a stable id derived from what it asks: its run, its node's key, kind, prompt and
options (and its occurrence among identical asks of that node), so the same code re-executed
(resume) asks under the same id whatever order concurrent asks open in. It is an ``ask_opened``
event; the first valid answer wins and becomes an ``ask_answered`` event recording who gave it.
An answer that does not fit (an option not offered, empty text) is refused to that answerer, the
reason said (a scripted answer's on stderr), and the ask stays open.

Answer sources are pluggable: scripted answers (``ag run --answer``) first, then every attached
source (the console reading stdin; later the sidecar) races to answer. When no source can ever
answer — stdin is not a terminal and holds nothing — the ask fails at once with a clear error
rather than hanging a job nobody is watching.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import os
import shlex
import stat
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import attrs
import msgspec
import trio

from . import events as ev
from ._exc import unwrap_single
from .errors import AskTimeout, InvalidAnswer, NoAnswerAvailable, UnknownAsk
from .ids import derived_id
from .info import AskInfo
from .journal import content_hash, with_occurrence
from .store.artifacts import check_name, sha_from_ref

ASK_KINDS = ("text", "approval", "choice", "files")
# The largest file a files ask takes unless it says otherwise.
DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024


def normalize_answer(kind: str, options: list[str], value: Any) -> str:
    """The canonical answer for ``value``, or ``InvalidAnswer`` saying why it does not fit.

    For approval and choice asks an answer may be an option (any case), its 1-based number, or
    an unambiguous prefix of one option ("y" for "yes").
    """
    if kind == "files":
        # Without the ask's full spec (an offline answer): its accept patterns are its options.
        return normalize_files(value, ev.FileAskSpec(accept=list(options), multiple=True))
    if not isinstance(value, str):
        raise InvalidAnswer(f"an answer must be text, got {type(value).__name__}")
    text = value.strip()
    if kind == "text":
        if not text:
            raise InvalidAnswer("the answer is empty; this ask needs some text")
        return text
    if not text:
        raise InvalidAnswer(f"the answer is empty; choose one of: {', '.join(options)}")
    lowered = text.casefold()
    for opt in options:
        if opt.casefold() == lowered:
            return opt
    if text.isdigit() and 1 <= int(text) <= len(options):
        return options[int(text) - 1]
    matches = [opt for opt in options if opt.casefold().startswith(lowered)]
    if len(matches) == 1:
        return matches[0]
    raise InvalidAnswer(f"{text!r} is not one of the options: {', '.join(options)}")


# -- files asks -------------------------------------------------------------------------------
#
# A files ask is answered with paths on the answering machine. Whoever answers checks each path
# (exists, a regular file, readable, accepted, within the size limit) and copies it into the
# store's blobs (content-addressed: copying twice is harmless); the answer recorded is then a
# JSON list of what was stored ({"sha256", "name", "size", "mime"}), never a path. The node
# records each file as an artifact of its own and gets their refs.


class StoredFile(msgspec.Struct, kw_only=True):
    sha256: str
    name: str
    size: int
    mime: str = "application/octet-stream"


_FILES_DECODER = msgspec.json.Decoder(list[StoredFile])
_FILES_ENCODER = msgspec.json.Encoder()


def _size_text(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024  # type: ignore[assignment]
    return str(n)


def accepts(name: str, mime: str, patterns: list[str]) -> bool:
    """``patterns``: globs on the file name (``*.csv``), extensions (``.csv``) or mime types
    (``image/*``, ``text/csv``); none means anything."""
    if not patterns:
        return True
    lname = name.casefold()
    for pat in patterns:
        p = pat.strip().casefold()
        if not p:
            continue
        if "/" in p:
            if fnmatch.fnmatchcase(mime.casefold(), p):
                return True
        elif p.startswith("."):
            if lname.endswith(p):
                return True
        elif fnmatch.fnmatchcase(lname, p):
            return True
    return False


def _limit(spec: ev.FileAskSpec) -> int:
    return spec.max_bytes or DEFAULT_MAX_FILE_BYTES


def check_path(raw: str, spec: ev.FileAskSpec) -> Path:
    """The file at ``raw`` if it may answer an ask of ``spec``, else ``InvalidAnswer`` saying
    why (one line)."""
    path = Path(os.path.expanduser(raw.strip()))
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InvalidAnswer(f"no file at {raw!r}") from None
    except OSError as exc:
        raise InvalidAnswer(f"cannot look at {raw!r}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidAnswer(f"{raw!r} is a directory; this ask takes files")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidAnswer(f"{raw!r} is not a regular file")
    if not os.access(path, os.R_OK):
        raise InvalidAnswer(f"{raw!r} is not readable (permission denied)")
    if st.st_size > _limit(spec):
        raise InvalidAnswer(
            f"{raw!r} is {_size_text(st.st_size)}; this ask takes files up to {_size_text(_limit(spec))}"
        )
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if not accepts(path.name, mime, spec.accept):
        raise InvalidAnswer(f"{raw!r} is not an accepted file (accepts {', '.join(spec.accept)})")
    return path


def split_paths(text: str, multiple: bool) -> list[str]:
    """Paths typed on one line: the whole line when it names one file (spaces and all), else
    shell-style words (quote a path that has spaces)."""
    text = text.strip()
    if not text:
        return []
    if not multiple or Path(os.path.expanduser(text)).exists():
        return [text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text]
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise InvalidAnswer(f"cannot read the paths: {exc}") from None


def store_paths(blobs: Any, paths: list[str], spec: ev.FileAskSpec) -> str:
    """Check ``paths`` and copy them into ``blobs``; the canonical answer (JSON). Blocking:
    call it from a thread (or another process, as ``ag answer --file`` does)."""
    if not paths:
        raise InvalidAnswer("no file given; this ask needs " + ("one or more files" if spec.multiple else "a file"))
    if len(paths) > 1 and not spec.multiple:
        raise InvalidAnswer(f"{len(paths)} files given; this ask takes one")
    checked = [check_path(p, spec) for p in paths]  # every path checked before any is copied
    stored = []
    for path in checked:
        try:
            sha, size = blobs.put_file(path)
        except OSError as exc:
            raise InvalidAnswer(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
        if size > _limit(spec):  # it grew between the check and the copy
            raise InvalidAnswer(f"{str(path)!r} is larger than {_size_text(_limit(spec))}")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        stored.append(StoredFile(sha256=sha, name=path.name, size=size, mime=mime))
    return _FILES_ENCODER.encode(stored).decode()


def decode_files(answer: str) -> list[StoredFile]:
    return _FILES_DECODER.decode(answer)


def normalize_files(value: Any, spec: ev.FileAskSpec, blobs: Any = None) -> str:
    """The canonical answer to a files ask of ``spec`` from ``value``: the JSON list of stored
    files an answerer sends (checked: names, count, sizes, accept patterns and, given the
    store's ``blobs``, that each blob is there with that size), or, given ``blobs``, path text
    (checked and copied here)."""
    if not isinstance(value, str):
        raise InvalidAnswer(f"an answer must be text, got {type(value).__name__}")
    text = value.strip()
    if not text.startswith("["):
        if blobs is None:
            raise InvalidAnswer("this ask takes files: answer with `ag answer ASK --file PATH`")
        return store_paths(blobs, split_paths(text, spec.multiple), spec)
    try:
        files = _FILES_DECODER.decode(text)
    except msgspec.ValidationError as exc:
        raise InvalidAnswer(f"not a list of stored files: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidAnswer("not a list of stored files (bad JSON)") from None
    if not files:
        raise InvalidAnswer("no file given")
    if len(files) > 1 and not spec.multiple:
        raise InvalidAnswer(f"{len(files)} files given; this ask takes one")
    for f in files:
        try:
            sha_from_ref(f.sha256)
            check_name(f.name)
        except Exception as exc:  # StoreError: untrusted text from an answerer
            raise InvalidAnswer(str(exc)) from None
        if "/" in f.name:
            raise InvalidAnswer(f"file name {f.name!r} must not contain '/'")
        if f.size < 0 or f.size > _limit(spec):
            raise InvalidAnswer(f"{f.name!r} is {_size_text(max(f.size, 0))}; this ask takes files up to {_size_text(_limit(spec))}")
        if not accepts(f.name, f.mime, spec.accept):
            raise InvalidAnswer(f"{f.name!r} is not an accepted file (accepts {', '.join(spec.accept)})")
        if blobs is not None:
            try:
                actual = blobs.path_for(f.sha256).stat().st_size if blobs.has(f.sha256) else None
            except OSError:
                actual = None
            if actual is None:
                raise InvalidAnswer(f"{f.name!r} ({f.sha256[:12]}) is not in this store")
            if actual != f.size:
                raise InvalidAnswer(f"{f.name!r} is {actual} bytes in the store, not {f.size}")
    return _FILES_ENCODER.encode(files).decode()


def ask_identity(kind: str, prompt: str, options: list[str]) -> str:
    """What makes two asks of one node the same ask (before their occurrence count)."""
    return f"ask|{kind}|{content_hash([prompt, list(options)])}"


def ask_id_for(run_id: str, node_key: str, kind: str, prompt: str, options: list[str], n: int = 1) -> str:
    """The id the ``n``-th identical ask of the node ``node_key`` gets (see ``NodeHandle.identity``)."""
    return derived_id("ask", run_id, with_occurrence(f"{node_key}|{ask_identity(kind, prompt, options)}", n))


def _say(text: str) -> None:
    """Tell the person running this process (stderr: stdout may carry the run's output)."""
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (ValueError, OSError):
        pass


class AnswerSource(Protocol):
    """Something that can answer asks (the console; later the sidecar's clients)."""

    name: str

    def available(self) -> bool:
        """Could this source ever answer right now?"""
        ...

    async def serve(self, ask: PendingAsk, broker: AskBroker) -> None:
        """Try to answer ``ask`` through ``broker.answer``; return when answered or giving up.
        Cancelled as soon as another source answers."""
        ...


@attrs.define(eq=False)
class PendingAsk:
    """An ask waiting for its answer: what it asks (``info``, the shape every front end gets)
    and the race of the sources to answer it."""

    info: AskInfo
    done: trio.Event = attrs.field(factory=trio.Event)
    answer: str | None = None
    by: str = ""
    gave_up: list[str] = attrs.field(factory=list)
    unanswerable: bool = False

    def describe(self) -> str:
        return f"ask {self.info.ask_id} ({self.info.prompt!r})"


class AskBroker:
    def __init__(self, runtime: Any, answers: list[str], sources: list[AnswerSource]) -> None:
        self.runtime = runtime
        self.scripted: deque[str] = deque(answers)
        self.sources: list[AnswerSource] = list(sources)
        self.pending: dict[str, PendingAsk] = {}

    def add_source(self, source: AnswerSource) -> None:
        self.sources.append(source)

    async def ask(
        self,
        node: Any,
        kind: str,
        prompt: str,
        options: list[str] | None = None,
        timeout_s: float | None = None,
        *,
        default: str | None = None,
        files: ev.FileAskSpec | None = None,
    ) -> str:
        if kind not in ASK_KINDS:
            raise ValueError(f"ask kind must be one of {ASK_KINDS}, got {kind!r}")
        options = [str(o) for o in (options or [])]
        if kind == "files":
            files = files or ev.FileAskSpec(accept=options)
        elif kind != "text" and len(options) < 2:
            raise ValueError(f"a {kind} ask needs at least two options")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        ask_id = derived_id("ask", node.run_id, node.identity(ask_identity(kind, prompt, options)))
        journal = node.run.journal
        if journal is not None and not journal.tools_only and ask_id in journal.answers:
            # Answered before a crash (or while no runtime was alive): not asked again.
            await trio.lowlevel.checkpoint()
            return journal.answers[ask_id]
        pending = PendingAsk(AskInfo(ask_id=ask_id, run_id=node.run_id, node=node.path, kind=kind, prompt=prompt,
                                     options=options, timeout_s=timeout_s, opened=time.time(), files=files))
        node.emit(ev.AskOpened, ask_id=ask_id, ask_kind=kind, prompt=prompt, options=options,
                  timeout_s=timeout_s, files=files)
        self.pending[ask_id] = pending
        closed = False
        try:
            while self.scripted:
                value = self.scripted.popleft()
                try:
                    self.answer(ask_id, value, by="script")
                except InvalidAnswer as exc:
                    # Refused like any answer that does not fit: said, and the ask stays open
                    # for the next scripted answer, the console or the sidecar.
                    pending.gave_up.append(f"scripted answer {value!r} refused: {exc}")
                    _say(f"✗ scripted answer {value!r} refused for {pending.describe()}: {exc}")
                    continue
                await trio.lowlevel.checkpoint()
                return pending.answer  # type: ignore[return-value]
            await self._race(pending)
            if pending.answer is not None:
                return pending.answer
            closed = True
            if pending.unanswerable:
                node.emit(ev.AskExpired, ask_id=ask_id, timeout_s=timeout_s, reason="unanswerable")
                raise NoAnswerAvailable(
                    f"{pending.describe()} cannot be answered: {'; '.join(pending.gave_up)}. "
                    "Run it from a terminal, or pass answers in order with "
                    "`ag run TARGET --answer TEXT`."
                )
            node.emit(ev.AskExpired, ask_id=ask_id, timeout_s=timeout_s, reason="timeout")
            if default is not None:
                return default
            raise AskTimeout(ask_id, timeout_s or 0.0)
        finally:
            self.pending.pop(ask_id, None)
            if pending.answer is None and not closed:
                node.emit(ev.AskExpired, ask_id=ask_id, timeout_s=timeout_s, reason="cancelled")

    async def _race(self, pending: PendingAsk) -> None:
        sources = [s for s in self.sources if s.available()]
        if not sources:
            pending.gave_up.append("no channel that can answer is attached (stdin is not a terminal)")
            pending.unanswerable = True
            return
        live = len(sources)

        async def serve(source: AnswerSource) -> None:
            nonlocal live
            await source.serve(pending, self)
            live -= 1
            if pending.answer is None:
                if live == 0:
                    if not pending.gave_up:
                        pending.gave_up.append(f"{source.name} gave up")
                    pending.unanswerable = True
                    pending.done.set()

        with unwrap_single():
            async with trio.open_nursery() as nursery:
                for source in sources:
                    nursery.start_soon(serve, source)
                with trio.move_on_after(pending.info.timeout_s or float("inf")):
                    await pending.done.wait()
                nursery.cancel_scope.cancel()

    def answer(self, ask_id: str, value: Any, *, by: str) -> str:
        """Answer an open ask. Raises ``UnknownAsk`` for an unknown or closed ask and
        ``InvalidAnswer`` for an answer that does not fit; the ask stays open then."""
        pending = self.pending.get(ask_id)
        if pending is None or pending.answer is not None:
            raise UnknownAsk(f"no open ask {ask_id!r}")
        info = pending.info
        if info.kind == "files":
            canonical = normalize_files(value, info.files or ev.FileAskSpec(), self.runtime.blobs)
        else:
            canonical = normalize_answer(info.kind, info.options, value)
        pending.answer, pending.by = canonical, by
        run = self.runtime.runs.get(info.run_id)
        if run is not None:
            run.emit(ev.AskAnswered, node=info.node, ask_id=ask_id, answer=canonical, by=by)
        pending.done.set()
        return canonical
