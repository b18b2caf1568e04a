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

import sys
import time
from collections import deque
from typing import Any, Protocol

import attrs
import trio

from . import events as ev
from ._exc import unwrap_single
from .errors import AskTimeout, InvalidAnswer, NoAnswerAvailable
from .ids import derived_id
from .journal import content_hash, with_occurrence

ASK_KINDS = ("text", "approval", "choice")


def normalize_answer(kind: str, options: list[str], value: Any) -> str:
    """The canonical answer for ``value``, or ``InvalidAnswer`` saying why it does not fit.

    For approval and choice asks an answer may be an option (any case), its 1-based number, or
    an unambiguous prefix of one option ("y" for "yes").
    """
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
    ask_id: str
    run_id: str
    node: str
    kind: str
    prompt: str
    options: list[str]
    timeout_s: float | None
    done: trio.Event = attrs.field(factory=trio.Event)
    answer: str | None = None
    by: str = ""
    gave_up: list[str] = attrs.field(factory=list)
    unanswerable: bool = False
    opened: float = attrs.field(factory=time.time)

    def describe(self) -> str:
        return f"ask {self.ask_id} ({self.prompt!r})"


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
    ) -> str:
        if kind not in ASK_KINDS:
            raise ValueError(f"ask kind must be one of {ASK_KINDS}, got {kind!r}")
        options = [str(o) for o in (options or [])]
        if kind != "text" and len(options) < 2:
            raise ValueError(f"a {kind} ask needs at least two options")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        ask_id = derived_id("ask", node.run_id, node.identity(ask_identity(kind, prompt, options)))
        journal = node.run.journal
        if journal is not None and not journal.tools_only and ask_id in journal.answers:
            # Answered before a crash (or while no runtime was alive): not asked again.
            await trio.lowlevel.checkpoint()
            return journal.answers[ask_id]
        pending = PendingAsk(ask_id, node.run_id, node.path, kind, prompt, options, timeout_s)
        node.emit(ev.AskOpened, ask_id=ask_id, ask_kind=kind, prompt=prompt, options=options,
                  timeout_s=timeout_s)
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
                with trio.move_on_after(pending.timeout_s if pending.timeout_s else float("inf")):
                    await pending.done.wait()
                nursery.cancel_scope.cancel()

    def answer(self, ask_id: str, value: Any, *, by: str) -> str:
        """Answer an open ask. Raises ``KeyError`` for an unknown or closed ask and
        ``InvalidAnswer`` for an answer that does not fit; the ask stays open then."""
        pending = self.pending.get(ask_id)
        if pending is None or pending.answer is not None:
            raise KeyError(f"no open ask {ask_id!r}")
        canonical = normalize_answer(pending.kind, pending.options, value)
        pending.answer, pending.by = canonical, by
        run = self.runtime.runs.get(pending.run_id)
        if run is not None:
            run.emit(ev.AskAnswered, node=pending.node, ask_id=ask_id, answer=canonical, by=by)
        pending.done.set()
        return canonical
