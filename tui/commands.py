"""The command palette (``:`` or ctrl+p): jump anywhere and act on anything by name.

Besides the panels, it offers the runs and asks the dashboard knows about — "open run …",
"answer ask …", "cancel run …", "resume run …" (posted as intents, as the panels do) — so a person who knows an id from a log or a
chat message gets there in a few keystrokes. Actions still go through their confirmation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.markup import escape
from textual.message import Message

from aethergraph.runtime import events as ev
from aethergraph.runtime.textsafe import one_line

from .messages import AnswerRequested, CancelRequested, OpenRun, ReloadRequested, ResumeRequested

if TYPE_CHECKING:
    from .app import AetherGraphApp

MAX_RUNS = 300


class DashboardCommands(Provider):
    @property
    def dash(self) -> "AetherGraphApp":
        return cast("AetherGraphApp", self.app)

    def _intent(self, intent: type[Message], *args: Any) -> Callable[[], None]:
        """A command that posts an intent (a fresh message each time it is chosen)."""
        return lambda: self.app.post_message(intent(*args))

    def _commands(self) -> list[tuple[str, object, str]]:
        dash, intent = self.dash, self._intent
        out: list[tuple[str, object, str]] = [
            ("Go to Runs (1)", partial(dash.action_panel, "runs"), "every run, newest first"),
            ("Go to Run detail (2)", partial(dash.action_panel, "run"), "the run you opened last"),
            ("Go to Asks (3)", partial(dash.action_panel, "asks"), "questions runs are waiting on"),
            ("Go to Memory (4)", partial(dash.action_panel, "memory"), "query recorded memory"),
            ("Go to Artifacts (5)", partial(dash.action_panel, "artifacts"), "artifacts with provenance"),
            ("Help (?)", dash.action_help, "every key"),
            ("Reload the index", intent(ReloadRequested), "read the runs list again now"),
        ]
        st = dash.state
        for ask in st.all_asks():
            out.append((f"Answer ask {one_line(ask.ask_id)}", intent(AnswerRequested, ask.ask_id),
                        f"{ask.kind}: {ask.prompt[:60]}"))
        for run_id in st.ordered()[:MAX_RUNS]:
            row = st.runs[run_id]
            out.append((f"Open run {run_id}", intent(OpenRun, run_id), f"{row.graph} {row.status.upper()}"))
            if row.status == ev.RUNNING:
                out.append((f"Cancel run {run_id}", intent(CancelRequested, run_id), row.graph))
            if row.status == ev.INTERRUPTED:
                out.append((f"Resume run {run_id}", intent(ResumeRequested, run_id), row.graph))
        return out

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands()[:12]:
            yield DiscoveryHit(name, callback, help=_help(help_text))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(f"{name} {help_text}")
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=_help(help_text))


def _help(text: str) -> str:
    """The palette parses help as markup: a graph name or prompt must stay literal."""
    return escape(one_line(text))
