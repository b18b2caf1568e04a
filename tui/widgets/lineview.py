"""A long list of one-line items (timeline events, log lines), drawn on demand.

Why not ``RichLog``: it renders a line once, at the width of the moment, and keeps the result;
a resize then leaves every line cut at the old width, and a filter or a search means writing
everything again. Here the items stay items (the run model's own deques): only the lines on
screen are rendered, for the width the view has now, and cached until the width or the search
changes. So it reflows on resize, filters and searches cost nothing to redraw, and a run
streaming a thousand events a second costs one screenful of rendering per redraw.

Following: at the bottom, the view follows new items (like ``tail -f``). Scrolling up pauses
it — new items still arrive but the view stays where the person is reading — and End, G or F
resumes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

MATCH_STYLE = Style(reverse=True, bold=True)
CURRENT_STYLE = Style(underline=True)


class LineView(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LineView { height: 1fr; scrollbar-size-vertical: 1; }
    """

    BINDINGS = [
        Binding("k", "scroll_up", "Up", show=False),
        Binding("j", "scroll_down", "Down", show=False),
        Binding("g,home", "top", "Top", show=False),
        Binding("G,end,F", "follow", "Follow (end)", show=False),
        Binding("n", "next_match(1)", "Next match", show=False),
        Binding("N", "next_match(-1)", "Previous match", show=False),
    ]

    class FollowChanged(Message):
        """Following was paused (scrolled up) or resumed; the screen says so."""

        def __init__(self, view: "LineView") -> None:
            super().__init__()
            self.view = view

    class AtTop(Message):
        """Scrolled to the very top (by the person): the owner may have older items to add."""

        def __init__(self, view: "LineView") -> None:
            super().__init__()
            self.view = view

    def __init__(self, render: Callable[[Any], Text], *, id: str) -> None:
        super().__init__(id=id)
        self._render = render
        self._items: Sequence[Any] = ()
        self._cache: dict[Any, tuple[Any, Strip]] = {}
        self._cache_width = -1
        self.follow = True
        self.search = ""
        self.match_index: int | None = None
        self._programmatic = False

    # -- content ---------------------------------------------------------------------------------

    @property
    def items(self) -> Sequence[Any]:
        return self._items

    def text_of(self, item: Any) -> Text:
        """One item as the view draws it (before clipping to the width)."""
        return self._render(item)

    def set_items(self, items: Sequence[Any], dropped: int = 0, *, changed: bool = False) -> None:
        """Show ``items`` (read, never copied: the run model's deque or a filtered list).
        ``dropped``: how many items left the front since the last call (a bounded deque), so a
        paused view keeps the same lines under the reader's eyes. ``changed``: the items are a
        different list (a filter changed), not the same one grown."""
        self._items = items
        if changed:
            self._cache.clear()
            self.match_index = None
        elif dropped and not self.follow:
            self._jump(max(0, self.scroll_y - dropped))
        if self.match_index is not None:
            self.match_index = max(0, self.match_index - dropped) if not changed else None
        self.virtual_size = Size(self.scrollable_content_region.width or self.size.width, len(items))
        if self.follow:
            self._jump(max(0, len(items) - self.scrollable_content_region.height))
        self.refresh()

    def _jump(self, y: float) -> None:
        self._programmatic = True
        try:
            self.scroll_to(y=y, animate=False, immediate=True)
        finally:
            self._programmatic = False

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._programmatic:
            return
        if new <= 0 < old:
            self.post_message(self.AtTop(self))
        at_end = new >= self.max_scroll_y
        if at_end != self.follow:
            self.follow = at_end
            self.post_message(self.FollowChanged(self))

    def on_resize(self) -> None:
        # Every line is rendered again for the new width (that is the reflow).
        self._cache.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._items))
        if self.follow:
            self._jump(max(0, len(self._items) - self.scrollable_content_region.height))

    # -- drawing ---------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        style = self.rich_style
        if width != self._cache_width:
            self._cache.clear()
            self._cache_width = width
        i = int(self.scroll_y) + y
        items = self._items
        if i >= len(items) or width <= 0:
            return Strip.blank(width, style)
        item = items[i]
        key = (id(item), i == self.match_index)
        cached = self._cache.get(key)
        # The item is kept beside its line: an id is only unique while the object lives, and
        # the run's deque lets old events go.
        strip = cached[1] if cached is not None and cached[0] is item else None
        if strip is None:
            text = self._render(item).copy()
            text.no_wrap = True
            if self.search:
                text.highlight_words([self.search], MATCH_STYLE, case_sensitive=False)
                if i == self.match_index:
                    text.stylize(CURRENT_STYLE)
            text.truncate(width, overflow="ellipsis")
            text.stylize_before(style)
            strip = Strip(list(text.render(self.app.console, end=""))).extend_cell_length(width, style)
            if len(self._cache) > 4000:
                self._cache.clear()
            self._cache[key] = (item, strip)
        return strip.crop(0, width)

    # -- keys --------------------------------------------------------------------------------------

    def action_top(self) -> None:
        self.scroll_home(animate=False, immediate=True)
        self.post_message(self.AtTop(self))

    def action_follow(self) -> None:
        self.scroll_end(animate=False, immediate=True)
        if not self.follow:
            self.follow = True
            self.post_message(self.FollowChanged(self))

    def set_search(self, term: str) -> bool:
        """Search for ``term`` (case-insensitive) from the top of the view; False: no match."""
        self.search = term
        self._cache.clear()
        self.match_index = None
        if not term:
            self.refresh()
            return True
        return self.action_next_match(1, start=int(self.scroll_y) - 1)

    def action_next_match(self, step: int, start: int | None = None) -> bool:
        """Move to the next (``step`` 1) or previous (-1) item containing the search term,
        wrapping around; the view scrolls to it (which pauses following)."""
        term = self.search.casefold()
        items = self._items
        if not term or not items:
            return False
        n = len(items)
        here = self.match_index if start is None and self.match_index is not None else (
            start if start is not None else int(self.scroll_y) - 1)
        for k in range(1, n + 1):
            i = (here + step * k) % n
            if term in self._render(items[i]).plain.casefold():
                self.match_index = i
                self._cache.clear()
                if not (self.scroll_y <= i < self.scroll_y + self.scrollable_content_region.height):
                    self.scroll_to(y=max(0, i - self.scrollable_content_region.height // 2), animate=False,
                                   immediate=True)
                self.refresh()
                return True
        self.refresh()
        return False
