"""The top line of every screen: the numbered panels, where you are, and the asks badge.

The badge is here, not on the Asks screen, because a question a run is waiting on must be
visible wherever you are. It is a number in brackets as well as a colour, so it reads the same
with NO_COLOR.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

PANELS = (
    ("1", "runs", "Runs"),
    ("2", "run", "Run"),
    ("3", "asks", "Asks"),
    ("4", "memory", "Memory"),
    ("5", "artifacts", "Artifacts"),
)


class TopBar(Static):
    DEFAULT_CSS = """
    TopBar {
        height: 1;
        dock: top;
    }
    """

    def __init__(self, mode: str) -> None:
        super().__init__(id="topbar", markup=False)
        self.mode = mode

    def on_mount(self) -> None:
        self.watch(self.app, "ask_count", self._redraw, init=False)
        self.watch(self.app, "live_count", self._redraw, init=False)
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self, *_: object) -> None:
        self.update(self.render_bar(self.size.width or 80), layout=False)

    def render_bar(self, width: int) -> Text:
        asks = getattr(self.app, "ask_count", 0)
        live = getattr(self.app, "live_count", 0)
        compact = width < 84
        bar = Text(no_wrap=True, overflow="crop")
        bar.append(" AG " if compact else " AetherGraph ", style="bold reverse")
        for key, mode, label in PANELS:
            bar.append(" ")
            style = "bold reverse" if mode == self.mode else ""
            bar.append(f"{key}", style="bold" if not style else style)
            bar.append(f" {label}", style=style)
            if mode == "asks":
                if asks:
                    bar.append(" ")
                    bar.append(f"[{asks}]", style="bold reverse" if mode != self.mode else "bold")
                else:
                    bar.append(" [0]", style="dim")
        right = f" ● {live} live " if live else " ○ no runtime "
        pad = width - bar.cell_len - len(right)
        if pad > 0:
            bar.append(" " * pad)
            bar.append(right, style="bold" if live else "dim")
        return bar
