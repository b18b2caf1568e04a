"""What the log writer hands the index: one run's bytes appended by one batch.

Its own module, not the writer's, so that the index — and every read-only reader of it, such
as the dashboard — can name it without importing the writer and with it trio: ``ag tui`` does
not write, and the import is a large part of its first paint (bench B11).
"""

from __future__ import annotations

from pathlib import Path

import attrs

from ..events import Event


@attrs.define(eq=False)
class Segment:
    """A run's bytes appended by one batch, with where each event starts."""

    run_id: str
    path: Path
    start: int
    data: bytes
    events: list[Event]
    offsets: list[int]
    tickets: list[int] = attrs.field(factory=list)

    @property
    def end(self) -> int:
        return self.start + len(self.data)
