"""A static run's DAG (``@graphify``): every planned node with its state, in an order that runs.

The shape comes from the run's ``graph_planned`` event, the states from its node events (the
run summary's nodes), so nodes that have not started — or never will, because a dependency
failed — are shown too. A node's path is ``<graph node path>/<id>``.

Derived states (never written to a log): ``waiting`` (not started, the run goes on),
``skipped`` (a dependency failed, was cancelled or skipped), ``not run`` (the run ended or was
interrupted before it started).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.widgets import Static

from aethergraph.runtime import events as ev
from aethergraph.runtime.dag import topological_order

from ..format import NODE_MARK, STATUS_STYLE, one_line

WAITING = "waiting"
SKIPPED = "skipped"
NOT_RUN = "not run"
_BAD = (ev.FAILED, ev.CANCELLED, ev.TIMED_OUT, SKIPPED)
_DERIVED_STYLE = {WAITING: "dim", SKIPPED: "yellow dim", NOT_RUN: "dim"}
_DERIVED_MARK = {WAITING: "·", SKIPPED: "↷", NOT_RUN: "-"}


def dag_rows(planned: ev.GraphPlanned, nodes: Mapping[str, Any], run_status: str) -> list[tuple[str, str, str]]:
    """(id, state, detail) per planned node, dependencies before dependants. ``nodes``: path ->
    an object with ``state`` (``aethergraph.runtime.history.NodeSummary``); ``run_status``: the run's."""
    base = planned.node
    by_id = {n.id: n for n in planned.nodes}
    order = _order(planned)
    states: dict[str, str] = {}
    rows = []
    for i in order:
        n = by_id[i]
        seen = nodes.get(f"{base}/{i}")
        blocked = next((d for d in n.deps if states.get(d) in _BAD), None)
        if seen is not None:
            state = seen.state
        elif blocked is not None:
            state = SKIPPED
        elif run_status == ev.RUNNING:
            state = WAITING
        else:
            state = NOT_RUN
        states[i] = state
        waits = ", ".join(d + (" (after)" if d in n.after else "") for d in n.deps)
        detail = f"{n.kind} {n.name}" + (f"  <- {waits}" if waits else "")
        if state == SKIPPED and blocked is not None:
            detail += f"  [{blocked} {states[blocked]}]"
        rows.append((i, state, detail))
    return rows


def _order(planned: ev.GraphPlanned) -> list[str]:
    """The planned order, dependencies first (a log is untrusted text: a cycle or an unknown
    dependency must not hang or break the view, so those nodes come last as they are)."""
    deps = {n.id: [d for d in n.deps if d != n.id] for n in planned.nodes}
    known = set(deps)
    try:
        return topological_order({i: [d for d in ds if d in known] for i, ds in deps.items()})
    except ValueError:
        return list(deps)


def render(planned: ev.GraphPlanned, nodes: Mapping[str, Any], run_status: str) -> Text:
    rows = dag_rows(planned, nodes, run_status)
    rows = [(one_line(i), one_line(state), one_line(detail)) for i, state, detail in rows]
    width = max((len(i) for i, _, _ in rows), default=0)
    text = Text(no_wrap=True, overflow="ellipsis")
    limit = f", at most {planned.max_concurrency} at once" if planned.max_concurrency else ""
    # (all of it is from the run's log: untrusted text, its control characters shown)
    text.append(f"graph {one_line(planned.node)}: {len(rows)} nodes{limit}\n", style="bold")
    for i, state, detail in rows:
        mark = NODE_MARK.get(state) or _DERIVED_MARK.get(state, "?")
        style = STATUS_STYLE.get(state) or _DERIVED_STYLE.get(state, "")
        text.append(f"{mark} ", style=style)
        text.append(i.ljust(width))  # ids are checked at build time, but shown as plain text
        text.append(f"  {state.replace('_', ' '):<9}", style=style)
        text.append(f"  {detail}\n", style="dim")
    return text


class DagView(Static):
    """Shows the static graphs of one run (one block per ``graph_planned``; the last one for a
    graph node wins: a resumed run plans again)."""

    DEFAULT_CSS = """
    DagView { width: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._key: Any = None

    def sync(self, planned: Mapping[str, ev.GraphPlanned], nodes: Mapping[str, Any], run_status: str) -> None:
        states = tuple((p, getattr(n, "state", "")) for p, n in nodes.items())
        key = (tuple((k, id(v)) for k, v in planned.items()), states, run_status)
        if key == self._key:
            return  # nothing changed: no redraw
        self._key = key
        # One row per node, never wrapped (a wrapped row reads as two nodes): the view scrolls
        # sideways instead.
        text = Text(no_wrap=True)
        for graph_path in sorted(planned):
            text.append_text(render(planned[graph_path], nodes, run_status))
        self.update(text)
        self.display = bool(planned)


__all__ = ["DagView", "dag_rows", "render"]
