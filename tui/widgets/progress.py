"""Progress bars from ``channel().progress``: the few most recently updated, title and all.

Each is one line drawn for the width it has, so it reflows on resize: count, percent, rate and
ETA first (they are never cut), then a bar, then the title in what is left (``format.progress_line``).
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widget import Widget

from ..format import progress_line


class ProgressRow(Widget):
    DEFAULT_CSS = """
    ProgressRow { height: 1; }
    """

    def __init__(self, progress_id: str) -> None:
        super().__init__()
        self.progress_id = progress_id
        self._event = None
        self._first: tuple[float, float] | None = None

    def show(self, e, first: tuple[float, float] | None = None) -> None:
        self._event, self._first = e, first
        self.refresh()

    def render(self) -> Text:
        if self._event is None:
            return Text("")
        return progress_line(self._event, self._first, self.size.width)


class ProgressPanel(Vertical):
    DEFAULT_CSS = """
    ProgressPanel { height: auto; max-height: 4; display: none; }
    ProgressPanel.-active { display: block; }
    """

    def __init__(self, id: str) -> None:
        super().__init__(id=id)
        self._rows: dict[str, ProgressRow] = {}

    def reset(self) -> None:
        self.remove_children()
        self._rows = {}
        self.remove_class("-active")

    def sync(self, progress: dict, firsts: dict | None = None) -> None:
        """``progress``: the latest event of each bar; ``firsts``: (ts, current) of each bar's
        first event, for its rate."""
        firsts = firsts or {}
        wanted = list(progress)
        if list(self._rows) != wanted:
            self.remove_children()
            self._rows = {pid: ProgressRow(pid) for pid in wanted}
            if self._rows:
                self.mount_all(list(self._rows.values()))
            self.set_class(bool(self._rows), "-active")
        for pid, row in self._rows.items():
            e = progress.get(pid)
            if e is not None:
                row.show(e, firsts.get(pid))
