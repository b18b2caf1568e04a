"""``?``: every key of the panel you are on and of the whole app, from their bindings.

Generated from the BINDINGS themselves, so the help can never drift from what the keys do.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from ..widgets.jobs import JobsPanel
from ..widgets.lineview import LineView
from ..widgets.tables import RowTable

KEY_NAMES = {
    "question_mark": "?", "colon": ":", "slash": "/", "escape": "esc", "enter": "enter",
    "ctrl+q": "ctrl+q", "ctrl+p": "ctrl+p", "ctrl+r": "ctrl+r", "up": "↑", "down": "↓",
    "pageup": "pgup", "pagedown": "pgdn",
}


def key_label(key: str) -> str:
    return ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in key.split(","))


def bindings_table(title: str, bindings) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None,
                  padding=(0, 2, 0, 0), expand=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    seen = set()
    for b in bindings:
        if isinstance(b, tuple):
            b = Binding(*b)
        if not b.description or (b.key, b.description) in seen:
            continue
        seen.add((b.key, b.description))
        table.add_row(key_label(b.key), b.description)
    return table


def own_bindings(widget) -> list:
    """Keys the dashboard's own widgets add (enter on the runs table opens a run), without
    Textual's generic ones (cursor keys), which the last paragraph of the help covers."""
    if widget is None:
        return []
    out = []
    for cls in type(widget).__mro__:
        if cls.__module__.startswith("aethergraph.tui."):
            out.extend(cls.__dict__.get("BINDINGS", []))
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
        # The app's j/k are off under a dialog (its keys are its own): the help scrolls itself.
        Binding("j,down", "scroll('down')", "Scroll down", show=False),
        Binding("k,up", "scroll('up')", "Scroll up", show=False),
        Binding("pagedown,space", "scroll('page_down')", "Page down", show=False),
        Binding("pageup", "scroll('page_up')", "Page up", show=False),
        Binding("g,home", "scroll('home')", "Top", show=False),
        Binding("G,end", "scroll('end')", "Bottom", show=False),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        # What the help shows of the panel under it, taken now: all of it comes from classes
        # (``installed_name``), and the panel itself is not kept alive by a help kept installed.
        self.about = getattr(screen, "HELP", "")
        self.panel_name = getattr(screen, "MODE", "") or type(screen).__name__
        self.panel_bindings = [*own_bindings(screen.focused), *getattr(screen, "BINDINGS", [])]

    @staticmethod
    def installed_name(screen: Screen) -> str:
        """The name a help over ``screen`` is installed under: its content depends only on the
        panel's class and the class of the widget focused there, so one help per such pair is
        built once and pushed again on every later ``?`` (composing it and pruning it on ``esc``
        was the dearest key while a run streams, B8)."""
        return f"help:{type(screen).__qualname__}:{type(screen.focused).__qualname__}"

    def on_screen_resume(self) -> None:
        # A help pushed again opens at its top, as a new one would.
        self.query_one("#help-body", VerticalScroll).scroll_home(animate=False, immediate=True)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="dialog"):
            with VerticalScroll(id="help-body"):
                if self.about:
                    yield Static(Text(self.about), classes="help-about")
                name = self.panel_name
                yield Static(bindings_table(f"This panel ({name})", self.panel_bindings),
                             classes="help-table")
                for title, bindings in self.part_bindings(name):
                    yield Static(bindings_table(title, bindings), classes="help-table")
                yield Static(bindings_table("Everywhere", type(self.app).BINDINGS), classes="help-table")
                yield Static(Text(
                    "Lists: ↑/↓ or j/k move, enter opens, pgup/pgdn page, g/G first/last. Tab moves between "
                    "parts of a panel.\nAnswer dialog: 1–9 pick an option, enter sends what its 'enter sends' "
                    "line shows, tab switches to typing. A files ask opens a file picker: enter on a file picks it, s "
                    "sends, or type paths and press enter.\n"
                    "Every action asks first and names what it will do; the runtime's answer is shown, "
                    "errors included.\nNO_COLOR is honoured; states are always spelled out.",
                    style="dim"))
            yield Static("j/k, pgup/pgdn, g/G: scroll · esc / ? : close", classes="hint")

    @staticmethod
    def part_bindings(mode: str) -> list[tuple[str, list]]:
        """The keys of the parts a panel is made of, whichever has focus now: every list
        (first/last row), and on a run the timeline and log views."""
        parts = []
        if mode in ("runs", "asks", "memory", "artifacts"):
            parts.append(("Lists", [Binding("up,down", "", "Move"), Binding("pageup,pagedown", "", "Page"),
                                    *RowTable.BINDINGS]))
        if mode == "run":
            parts.append(("Node tree", [Binding("up,down", "", "Pick a node (the tabs show its part)")]))
            parts.append(("Timeline and log (tab to them)", [
                Binding("up,down,pageup,pagedown", "", "Scroll (scrolling up pauses following)"),
                *LineView.BINDINGS]))
            parts.append(("Jobs tab (J)", [Binding("up,down", "", "Pick a job (its output is followed)"),
                                           *JobsPanel.BINDINGS]))
        return parts

    def action_scroll(self, how: str) -> None:
        body = self.query_one("#help-body", VerticalScroll)
        getattr(body, f"action_scroll_{how}" if how in ("down", "up", "home", "end") else f"action_{how}")()

    def action_close(self) -> None:
        self.dismiss(None)
