"""The lists of the panels: one table that owns its columns' layout.

Every list has a few columns of a fixed width and one that takes what is left (a graph name, a
prompt): the table lays its columns out again when its width changes and then posts
``ColumnsChanged``, and the panel puts its rows back, clipped to ``width_of`` that column.

``DataTable`` binds enter quietly ("select the row"); a person on the Runs panel should read
"enter Open" at the bottom, and "enter Answer" on the Asks panel: ``RunsTable``, ``AsksTable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

_LINE_JOIN = Text("\n")

# (key, header, width incl. a one-column gap); a width of 0 takes what the others leave.
Column = tuple[str, str, int]


class RowTable(DataTable):
    """Every list: a row cursor, g/G/Home/End to its first and last row (k9s, lazygit), and
    columns laid out for its width. ``flex_min``: the least the flexible column gets;
    ``wide``: (from this width on, {column key: its width there}) — columns that show more
    when there is room."""

    BINDINGS = [
        Binding("g,home", "first_row", "First row", show=False),
        Binding("G,end", "last_row", "Last row", show=False),
    ]

    @dataclass
    class ColumnsChanged(Message):
        """The columns were laid out again (for a new width) and the rows cleared: the owner
        adds them back."""

        table: "RowTable"

    def __init__(self, id: str, columns: Sequence[Column] = (), *, flex_min: int = 10,
                 wide: tuple[int, dict[str, int]] = (0, {})) -> None:
        super().__init__(id=id, cursor_type="row", cell_padding=0)
        self.layout_columns = tuple(columns)
        self.flex_min = flex_min
        self.wide = wide
        self.laid_out_width = 0
        self._widths: dict[str, int] = {}

    def width_of(self, key: str) -> int:
        """The width the column ``key`` has now (0 before the first layout)."""
        return self._widths.get(key, 0)

    def on_resize(self, event: events.Resize) -> None:
        width = event.size.width
        if self.layout_columns and width != self.laid_out_width:
            self.laid_out_width = width
            self._lay_out(width)
            self.post_message(self.ColumnsChanged(self))

    def _lay_out(self, width: int) -> None:
        at, wider = self.wide
        widths = {key: (wider.get(key, w) if at and width >= at else w) for key, _, w in self.layout_columns}
        flex = max(self.flex_min, width - sum(widths.values()) - 1)  # (1: the scrollbar)
        self._widths = {key: w or flex for key, w in widths.items()}
        self.clear(columns=True)
        for key, header, _ in self.layout_columns:
            self.add_column(header, width=self._widths[key], key=key)

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> list[list[Segment]]:
        """A body cell drawn as one line of segments straight from its ``Text`` (the
        ``LineView`` way), instead of Textual's Rich render of a padded, styled renderable per
        cell: on the first frame the visible rows' cells were rendered twice, a tenth of the
        dashboard's first paint (B11). The same segments as that render gives a one-line,
        left-flowing cell that fits its column; anything else (a header, a wider or multi-line
        cell, another renderable) goes the usual way. Cached under Textual's own key."""
        row_key = self._row_locations.get_key(row_index) if row_index >= 0 else None
        column_key = self._column_locations.get_key(column_index) if column_index >= 0 else None
        row = self.rows.get(row_key) if row_key is not None else None
        if row is None or column_key is None or row.height != 1 or self.cell_padding:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cache_key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor,
                     self._update_count, self._pseudo_class_state)
        lines = self._cell_render_cache.get(cache_key)
        if lines is not None:
            return lines
        cells = self._get_row_renderables(row_index).cells
        text = cells[column_index] if column_index < len(cells) else None
        if (type(text) is not Text or text.justify not in (None, "default") or text.cell_len > width
                or "\n" in text.plain or "\t" in text.plain):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, row_index < self.fixed_rows or column_index < self.fixed_columns, hover, cursor,
            self.show_cursor, self._show_hover_cursor, self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css")
        # (joined as Rich joins a cell's lines: that turns the text's own style into a span)
        segments = list(_LINE_JOIN.join((text,)).render(self.app.console, end=""))
        if width > text.cell_len:
            segments.append(Segment(" " * (width - text.cell_len)))
        style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        lines = [list(Segment.apply_style(segments, style, post_style))]
        self._cell_render_cache[cache_key] = lines
        return lines

    def selected_key(self) -> str | None:
        """The key of the row under the cursor (None: no rows)."""
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # the cursor is past the rows while the table is rebuilt
            return None

    def restore_cursor(self, key: str | None) -> None:
        """Put the cursor back on the row ``key`` after the rows were drawn again."""
        if key is None or self.row_count == 0:
            return
        try:
            self.move_cursor(row=self.get_row_index(key), animate=False, scroll=False)
        except Exception:  # that row is gone (filtered out): stay where the index says
            pass

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
