"""A footer that rebuilds only when the keys it shows changed.

Textual's ``Footer`` recomposes (every key a new widget) on each bindings refresh of its screen.
A panel's bindings are refreshed when a dialog opens over it (the app then hides the keys the
dialog takes over: ``q``, ``?``, ``y``…) and again when the dialog closes, so ``?`` and esc
rebuilt the whole footer twice although it ends showing the same keys: the slowest keys of a
panel under a streaming run (bench B8). This one remembers what it drew; a refresh that only
takes keys away hides their widgets, one that brings back what was drawn shows them again, and
only a different set of keys rebuilds.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class SteadyFooter(Footer):
    _drawn: tuple[Any, ...] | None = None

    def _shown(self) -> tuple[Any, ...]:
        """What ``compose`` reads: each shown binding, whether it is enabled, its tooltip and
        how its key is displayed (a keymap can change that)."""
        app = self.app
        return tuple(
            (binding, enabled, tooltip, app.get_key_display(binding))
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show or binding.action == "command_palette")

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._drawn = self._shown()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        drawn = self._drawn
        if drawn is not None and self.is_attached and screen is self.screen and screen.app.app_focus:
            shown = self._shown()
            if [entry for entry in drawn if entry in shown] == list(shown):
                kept = {(binding.key, binding.action) for binding, *_ in shown}
                for key in self.query(FooterKey):
                    key.display = (key.key, key.action) in kept
                return
        super().bindings_changed(screen)
