"""Row tables whose enter key says, in the footer, what it does on that panel.

``DataTable`` binds enter quietly ("select the row"); a person on the Runs panel should read
"enter Open" at the bottom, and "enter Answer" on the Asks panel.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class RowTable(DataTable):
    """Every list: a row cursor, and g/G/Home/End to its first and last row (k9s, lazygit)."""

    BINDINGS = [
        Binding("g,home", "first_row", "First row", show=False),
        Binding("G,end", "last_row", "Last row", show=False),
    ]

    def __init__(self, id: str) -> None:
        super().__init__(id=id, cursor_type="row", cell_padding=0)

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)


class RunsTable(RowTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open")]


class AsksTable(RowTable):
    BINDINGS = [Binding("enter", "select_cursor", "Answer")]
