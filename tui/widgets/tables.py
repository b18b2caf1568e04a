"""Row tables whose enter key says, in the footer, what it does on that panel.

``DataTable`` binds enter quietly ("select the row"); a person on the Runs panel should read
"enter Open" at the bottom, and "enter Answer" on the Asks panel.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class RowTable(DataTable):
    def __init__(self, id: str) -> None:
        super().__init__(id=id, cursor_type="row", cell_padding=0)


class RunsTable(RowTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open")]


class AsksTable(RowTable):
    BINDINGS = [Binding("enter", "select_cursor", "Answer")]
