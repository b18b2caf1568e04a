"""What every panel shares: the top bar, the footer, a ``sync`` the app calls on its tick, and
``request`` to post what the person asks for.

Screens do not subscribe to anything themselves. The app calls ``sync()`` on the visible screen
at most ten times a second; a screen compares the state's version counters with the ones it
last drew and does nothing when they have not moved. Suspended panels (another one is shown)
cost nothing and catch up when they are shown again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer

from ..widgets import TopBar

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
        yield Footer(compact=True)

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
