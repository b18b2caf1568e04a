"""What the person asks the dashboard to do, in one place: the handlers of the intents
(``aethergraph.tui.messages``) that screens, dialogs and the command palette post.

A screen knows what is under its cursor; it does not know how a run is cancelled, which
runtime owns an ask, or what to confirm first. It posts ``CancelRequested(run, node)`` and
this module decides: refuse with a note (the run has ended), confirm (every action names what
it will do and waits for a yes), perform (through the run's runtime, in trio), and report
(a toast with the outcome, errors included).

Two kinds of work, one way each: what is done in trio (a sidecar call, starting a resume) is
awaited through the bridge in an async worker; what blocks (the store, a job's supervisor) runs
in a thread worker that checks ``is_cancelled`` and posts its outcome as a message.

``Actions`` is mixed into the app so that Textual delivers the intents here as they bubble up
from the screens; it uses the app's state, store and trio bridge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
from textual import work
from textual.worker import get_current_worker

from aethergraph.runtime import events as ev
from aethergraph.runtime.errors import InvalidAnswer, SidecarError
from aethergraph.runtime.info import AskInfo
from aethergraph.runtime.textsafe import one_line

from . import screens
from .messages import (
    ActionDone,
    AnswerDone,
    AnswerRequested,
    AnswerSubmitted,
    CancelJobRequested,
    CancelRequested,
    EarlierRequested,
    MoreRunsRequested,
    OpenRun,
    ReloadRequested,
    ResumeRequested,
    RetryRequested,
)
from .screens.confirm import ConfirmModal
from .state import RunModel

if TYPE_CHECKING:
    from .app import AetherGraphApp


@attrs.frozen
class AnswerOutcome:
    """What became of an answer: the canonical answer the run will see, or why it was refused
    (``error``, one line for the dialog, which stays open)."""

    answer: str | None
    error: str = ""


def refusal(exc: Exception) -> str:
    """An answer's refusal as the dialog shows it: the runtime's words (with its code, unless
    it only says the answer does not fit the ask), or the error's type when it is not ours."""
    if isinstance(exc, InvalidAnswer):
        return str(exc)
    if isinstance(exc, SidecarError):
        return f"{exc}" + (f" ({exc.code})" if exc.code != "invalid_answer" else "")
    return f"{type(exc).__name__}: {exc}"


class Actions:
    """The intents' handlers (mixed into ``AetherGraphApp``)."""

    # -- opening --------------------------------------------------------------------------------

    def on_open_run(self: "AetherGraphApp", msg: OpenRun) -> None:
        self.open_run(msg.run_id)

    def open_run(self: "AetherGraphApp", run_id: str) -> None:
        """Show a run in panel 2 (its log is read in a worker; live events queue meanwhile)."""
        if self.detail is None or self.detail.run_id != run_id:
            self.detail = RunModel(run_id, self.store.layout)
            self.read_run_log(run_id)
        self.action_panel("run")

    def on_reload_requested(self: "AetherGraphApp", _: ReloadRequested) -> None:
        self.reload_index()

    def on_more_runs_requested(self: "AetherGraphApp", msg: MoreRunsRequested) -> None:
        self.load_more_runs(msg.everything)

    def on_earlier_requested(self: "AetherGraphApp", msg: EarlierRequested) -> None:
        self.read_earlier(msg.run_id, msg.name, msg.before_seq)

    # -- answering ------------------------------------------------------------------------------

    def find_ask(self: "AetherGraphApp", ask_id: str) -> AskInfo | None:
        return self.state.asks.get(ask_id) or self.state.offline_asks.get(ask_id)

    def on_answer_requested(self: "AetherGraphApp", msg: AnswerRequested) -> None:
        ask = self.find_ask(msg.ask_id)
        if ask is None:
            self.notify(f"ask {msg.ask_id} is no longer open", severity="warning")
            return
        # A files ask is a tree of this machine's files to pick from; the others a question.
        dialog = screens.FilePickerModal(ask) if ask.kind == "files" else screens.AnswerModal(ask)
        self.push_screen(dialog, lambda answer: self._answered(ask, answer))

    def _answered(self: "AetherGraphApp", ask: AskInfo, answer: str | None) -> None:
        """The dialog closed (``answer`` None: without answering)."""
        if answer is None:
            return
        where = "" if ask.runtime_id else " (kept for the run's resume)"
        if ask.kind == "files":  # names and sizes, not the stored files' JSON
            from aethergraph.console import answered_files  # (rich console helpers: loaded on use)

            answer = answered_files(answer)
        self.notify(f"answered {ask.ask_id}: {one_line(answer)}{where}")
        if not ask.runtime_id:
            self.reload_index()
            if self.detail is not None and self.detail.run_id == ask.run_id:
                self.read_run_log(ask.run_id)  # its log has grown: show what it says now

    def on_answer_submitted(self: "AetherGraphApp", msg: AnswerSubmitted) -> None:
        ask, dialog = msg.ask, msg.dialog
        if ask.runtime_id:
            self.run_worker(self._answer_live(ask, msg.value, dialog), exclusive=True, group="answer")
        else:
            self._answer_offline(ask, msg.value, dialog)

    async def _answer_live(self: "AetherGraphApp", ask: AskInfo, value: str, dialog: Any) -> None:
        """Through the runtime that asked, which checks the answer and may refuse it."""
        try:
            answer = await self.bridge.call(self.backend.answer, ask.runtime_id, ask.ask_id, value)
        except Exception as exc:  # a refusal, a lost runtime…
            outcome = AnswerOutcome(None, refusal(exc))
        else:
            outcome = AnswerOutcome(answer)
        dialog.post_message(AnswerDone(outcome))

    @work(thread=True, exclusive=True, group="answer")
    def _answer_offline(self: "AetherGraphApp", ask: AskInfo, value: str, dialog: Any) -> None:
        """A run that is not live: the answer goes into its log, for its resume."""
        from aethergraph.interrupted import answer_offline  # (loaded on use: first paint does not need it)

        try:
            _, answer = answer_offline(self.store.layout, ask.ask_id, value)
        except Exception as exc:  # not one of the options, the run resumed meanwhile…
            outcome = AnswerOutcome(None, refusal(exc))
        else:
            outcome = AnswerOutcome(answer)
        if not get_current_worker().is_cancelled:
            dialog.post_message(AnswerDone(outcome))

    # -- actions on runs (each confirmed, each reported) ----------------------------------------

    def on_cancel_requested(self: "AetherGraphApp", msg: CancelRequested) -> None:
        run_id, node = msg.run_id, msg.node
        row = self.state.runs.get(run_id)
        if row is not None and row.status != ev.RUNNING:
            self.notify(f"run {run_id} is {row.status.upper()}: there is nothing to cancel", severity="warning")
            return
        what = f"node {node} of run {run_id}" if node else f"run {run_id}"
        detail = ("The node stops now and is recorded CANCELLED; its caller gets NodeCancelled. If the caller "
                  "catches it, the run goes on; if not, its siblings are cancelled too and the run ends CANCELLED."
                  if node else "Every node of the run stops now; the run is recorded CANCELLED, not FAILED.")
        self._perform_confirmed(f"Cancel {what}?", detail,
                                lambda: self.bridge.call(self.backend.cancel, run_id, node, ""),
                                f"cancel requested: {what}")

    def on_retry_requested(self: "AetherGraphApp", msg: RetryRequested) -> None:
        run_id, node = msg.run_id, msg.node
        self._perform_confirmed(
            f"Retry node {node} of run {run_id}?",
            "Its current attempt ends now and the next one starts with the same inputs.",
            lambda: self.bridge.call(self.backend.retry, run_id, node),
            f"retry requested: node {node} of run {run_id}",
        )

    def on_resume_requested(self: "AetherGraphApp", msg: ResumeRequested) -> None:
        run_id = msg.run_id
        row = self.state.runs.get(run_id)
        if row is not None and row.status == ev.RUNNING:
            self.notify(f"run {run_id} is still running", severity="warning")
            return
        from aethergraph.detach import start_resume_async  # (process spawning: loaded on use)

        # A process of its own (`ag resume RUN`, detached), never a live runtime that happens to
        # be reachable: that one lacks the run's services and takes it down when it ends.
        self._perform_confirmed(
            f"Resume run {run_id}?",
            "A new process of its own (ag resume, detached; output next to its log) imports its "
            "entrypoint again and continues it, replaying what it already did.",
            lambda: self.bridge.call(start_resume_async, self.store.layout, run_id),
            f"resume started: run {run_id} in a process of its own (ag attach {run_id})",
        )

    def on_cancel_job_requested(self: "AetherGraphApp", msg: CancelJobRequested) -> None:
        job_id = msg.job_id

        def cancel() -> None:
            self.notify(f"cancelling {job_id}…")
            self._cancel_job(job_id)

        self._confirm(
            f"Cancel job {job_id}?",
            f"{msg.what}\nSIGTERM to its process group, SIGKILL after its grace; the run that waits on it "
            "sees it cancelled.", cancel)

    @work(thread=True, group="jobs-cancel")
    def _cancel_job(self: "AetherGraphApp", job_id: str) -> None:
        """Through the job's supervisor, whichever process started it; waits for the job's end
        (SIGKILL may come only after its grace) and says how it ended."""
        from .widgets.jobs import cancel_job  # (the jobs machinery loads with the Jobs tab)

        try:
            done = ActionDone(cancel_job(self.home, job_id))
        except Exception as exc:
            done = ActionDone(f"cannot cancel {job_id}: {exc}", "error")
        if not get_current_worker().is_cancelled:
            self.post_message(done)

    def on_action_done(self: "AetherGraphApp", msg: ActionDone) -> None:
        self.notify(msg.text, severity=msg.severity)

    def _confirm(self: "AetherGraphApp", title: str, detail: str, on_yes: Callable[[], Any]) -> None:
        """Every action asks first, naming exactly what will happen; ``on_yes`` on a yes."""

        def decided(yes: bool | None) -> None:
            if yes:
                on_yes()

        self.push_screen(ConfirmModal(title, detail), decided)

    def _perform_confirmed(self: "AetherGraphApp", title: str, detail: str,
                           call: Callable[[], Awaitable[Any]], success: str) -> None:
        """Confirm, then ``call()`` (awaited: it runs in trio) and report how it went."""
        self._confirm(title, detail, lambda: self.run_worker(self._perform(call, success), group="actions"))

    async def _perform(self: "AetherGraphApp", call: Callable[[], Awaitable[Any]], success: str) -> None:
        """Await ``call()`` (in trio, through the bridge) and say how it went."""
        try:
            await call()
        except SidecarError as exc:
            self.notify(f"{exc}", title=f"refused ({exc.code})", severity="error", timeout=10)
        except Exception as exc:
            self.notify(f"{type(exc).__name__}: {exc}", title="failed", severity="error", timeout=10)
        else:
            self.notify(success)

