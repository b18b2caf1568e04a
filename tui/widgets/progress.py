"""Progress bars from ``channel().progress``: the few most recently updated, title and all."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar

from ..format import clip


class ProgressRow(Horizontal):
    DEFAULT_CSS = """
    ProgressRow { height: 1; }
    ProgressRow > Label { width: 1fr; min-width: 12; }
    ProgressRow > ProgressBar { width: auto; max-width: 60%; }
    """

    def __init__(self, progress_id: str) -> None:
        super().__init__()
        self.progress_id = progress_id

    def compose(self) -> ComposeResult:
        yield Label("", markup=False)
        yield ProgressBar(total=None, show_eta=False)

    def show(self, e) -> None:
        title = e.title or e.progress_id
        if e.subtitle:
            title += f" · {e.subtitle}"
        if e.state == "end":
            title += " (done)"
        self.query_one(Label).update(clip(title, 60), layout=False)
        bar = self.query_one(ProgressBar)
        total = e.total
        if e.state == "end" and total is None:
            total = max(e.current, 1.0)
            bar.update(total=total, progress=total)
        elif total is None:
            # No total: show the count in the label rather than an animation.
            bar.update(total=max(e.current, 1.0), progress=e.current)
        else:
            bar.update(total=total, progress=e.total if e.state == "end" else e.current)


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

    def sync(self, progress: dict) -> None:
        wanted = list(progress)
        if list(self._rows) != wanted:
            self.remove_children()
            self._rows = {pid: ProgressRow(pid) for pid in wanted}
            if self._rows:
                self.mount_all(list(self._rows.values()))
            self.set_class(bool(self._rows), "-active")
            self.call_after_refresh(self._show_all, dict(progress))
            return
        self._show_all(progress)

    def _show_all(self, progress: dict) -> None:
        for pid, row in self._rows.items():
            e = progress.get(pid)
            if e is not None and row.is_mounted:
                row.show(e)
