"""What every panel shares: the top bar, the footer, a ``sync`` the app calls on its tick, and
``request`` to post what the person asks for.

Screens do not subscribe to anything themselves. The app calls ``sync()`` on the visible screen
at most ten times a second; a screen compares the state's version counters with the ones it
last drew and does nothing when they have not moved. Suspended panels (another one is shown)
cost nothing and catch up when they are shown again.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input

from ..widgets import FilterInput, RowTable, SteadyFooter, TopBar

if TYPE_CHECKING:
    from ..app import AetherGraphApp


class DashboardScreen(Screen):
    MODE = ""
    HELP = ""

    @property
    def dash(self) -> "AetherGraphApp":
        return cast("AetherGraphApp", self.app)

    def compose(self) -> ComposeResult:
        yield TopBar(self.MODE)
        yield from self.compose_body()
        yield SteadyFooter(compact=True)

    def compose_body(self) -> ComposeResult:
        return iter(())

    def on_screen_resume(self) -> None:
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        """``sync`` unless the screen is still being put together (its widgets not mounted)."""
        if not self.is_mounted:
            return
        try:
            self.sync(force)
        except NoMatches:
            pass  # composed on the next tick

    def sync(self, force: bool = False) -> None:
        """Redraw what changed in the app's state since the last call."""

    def request(self, intent: type[Message], *about: Any) -> None:
        """Post an intent (``OpenRun``, ``CancelRequested``…) about what the cursor is on; the
        app's ``actions`` handle it. Nothing under the cursor (an empty ``about``): nothing."""
        if about and all(about):
            self.post_message(intent(*about))


class ListScreen(DashboardScreen):
    """A panel that is mostly one list (``TABLE``: the id of its ``RowTable``, which has the
    focus), with a ``/`` filter line when ``FILTER`` names one (a ``FilterInput``): typing
    narrows the list as you go (``self.filter``), enter goes back to the list, esc clears."""

    TABLE = ""
    FILTER = ""

    def __init__(self) -> None:
        super().__init__()
        self.filter = ""

    @cached_property
    def table(self) -> RowTable:
        """The list (looked up once: it is there from compose to the end, and sync asks for it
        ten times a second)."""
        return self.query_one(f"#{self.TABLE}", RowTable)

    def on_mount(self) -> None:
        self.table.focus()

    def on_row_table_columns_changed(self, _: RowTable.ColumnsChanged) -> None:
        self.rows_changed()

    def rows_changed(self) -> None:
        """Put the rows in again: the columns were laid out anew, or the filter changed."""
        self.redraw(force=True)

    # -- the filter line ---------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one(f"#{self.FILTER}", FilterInput).show()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.FILTER and event.input.id == self.FILTER:
            self.filter = event.value.strip().casefold()
            self.rows_changed()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.FILTER and event.input.id == self.FILTER:
            self.table.focus()

    def on_filter_input_dismissed(self, _: FilterInput.Dismissed) -> None:
        self.filter = ""
        self.table.focus()
        self.rows_changed()

    def action_clear_filter(self) -> None:
        if not self.FILTER or not (f := self.query_one(f"#{self.FILTER}", FilterInput)).shown:
            raise SkipAction()  # (esc goes back a panel instead)
        f.action_dismiss_filter()
