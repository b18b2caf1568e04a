"""The ``/`` filter line, k9s-style: hidden until asked for, live as you type, ``esc`` clears."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    DEFAULT_CSS = """
    FilterInput {
        display: none;
        height: 1;
        border: none;
        padding: 0 1;
    }
    FilterInput.-shown {
        display: block;
    }
    """

    BINDINGS = [Binding("escape", "dismiss_filter", "Clear filter", show=False)]

    class Dismissed(Message):
        """The filter was cleared and hidden; the owner puts focus back where it was."""

    def __init__(self, placeholder: str, id: str) -> None:
        super().__init__(placeholder=placeholder, id=id, compact=True)

    def show(self) -> None:
        self.add_class("-shown")
        self.focus()

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")

    def action_dismiss_filter(self) -> None:
        self.value = ""
        self.remove_class("-shown")
        self.post_message(self.Dismissed())
