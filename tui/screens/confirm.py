"""The confirmation every action goes through: it names exactly what will happen."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from aethergraph.runtime.textsafe import one_line, visible


class ConfirmModal(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("enter", "answer(True)", "Yes", show=False),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, title: str, detail: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            # The title names a run and a node: run-derived, so shown, not obeyed.
            yield Static(Text(one_line(self.title_text), style="bold"), id="confirm-title")
            if self.detail:
                yield Static(Text(visible(self.detail)), id="confirm-detail")
            yield Static(Text.assemble(("y", "bold reverse"), " / enter: do it    ", ("n", "bold reverse"),
                                       " / esc: leave it"), classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
