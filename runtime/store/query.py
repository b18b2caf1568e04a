"""Which memory events a reader wants: one shape for every way of asking.

``memory().query(...)`` in a graph, ``ag memory query --kind … --since 2h`` and the dashboard's
filter line (``kind:note tag:x since:2h words``) all build a ``MemoryQuery``, and the index
answers it (``Index.memory``). A filter added here is a filter all three have.
"""

from __future__ import annotations

import msgspec

from aethergraph.runtime.exits import UsageError
from aethergraph.runtime.frontend import parse_time

ORDERS = ("desc", "asc")


class MemoryQuery(msgspec.Struct, kw_only=True):
    """Memory events matching every filter given: any of ``kinds``, all of ``tags`` and of
    ``entities``, every word of ``text`` (full text), recorded in ``[since, until)``.

    ``since`` and ``until`` are epoch seconds, or text a person typed (``2h``, ``7d``, an ISO
    date or time), read when the query is made: a bad one raises ``UsageError`` there, before
    any reading starts. ``kinds`` may be one kind as a bare string; None is no filter."""

    kinds: list[str] = []
    tags: list[str] = []
    entities: list[str] = []
    run_id: str | None = None
    graph: str | None = None
    node: str | None = None
    topic: str | None = None
    since: float | str | None = None
    until: float | str | None = None
    text: str | None = None
    limit: int | None = 50
    order: str = "desc"

    def __post_init__(self) -> None:
        # Callers pass None for "any" (and a bare string for one kind): stored as lists.
        if isinstance(self.kinds, str):
            self.kinds = [self.kinds]
        self.kinds, self.tags, self.entities = self.kinds or [], self.tags or [], self.entities or []
        if isinstance(self.since, str):
            self.since = parse_time(self.since)
        if isinstance(self.until, str):
            self.until = parse_time(self.until)
        if self.order not in ORDERS:
            raise ValueError(f"order must be 'asc' or 'desc', got {self.order!r}")

    @classmethod
    def parse(cls, line: str, **fixed: object) -> MemoryQuery:
        """The dashboard's filter line, k9s-style: ``kind:K tag:T entity:E run:ID graph:G
        node:PATH since:2h until:…`` and the other words for full text. Raises ValueError
        naming what it could not read; ``fixed`` are fields the line does not say (a limit)."""
        fields: dict[str, list[str] | str] = {"kinds": [], "tags": [], "entities": []}
        words: list[str] = []
        for token in line.split():
            key, sep, value = token.partition(":")
            field = _LINE_KEYS.get(key) if sep and value else None
            if field is None:
                words.append(token)
            elif field in ("kinds", "tags", "entities"):
                fields[field].append(value)  # type: ignore[union-attr]
            else:
                fields[field] = value
        try:
            return cls(**fields, text=" ".join(words) or None, **fixed)  # type: ignore[arg-type]
        except UsageError as exc:
            raise ValueError(str(exc)) from None


# The filter line's words for the fields (a person types ``run:``, not ``run_id:``).
_LINE_KEYS = {"kind": "kinds", "tag": "tags", "entity": "entities", "run": "run_id", "graph": "graph",
              "node": "node", "since": "since", "until": "until"}
