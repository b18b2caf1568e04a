"""Sparklines of the ``metrics`` a run recorded in memory, one per metric name.

A run that records ``metrics={"loss": ..., "acc": ...}`` with each memory event is usually
training or converging; the shape of the curve says more at a glance than the last value, so
each metric gets a label (last, min, max, count) and a sparkline of its recent values.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Label, Sparkline

from aethergraph.runtime.textsafe import one_line

EMPTY = "no metrics recorded yet (memory().record(..., metrics={...}))"


def _num(v: float) -> str:
    return f"{v:.4g}"


class MetricsPanel(VerticalScroll):
    def __init__(self, id: str) -> None:
        super().__init__(id=id)
        self._names: list[str] = []
        # The widgets of each metric, kept here: querying right after a remount could still
        # see the ones being removed.
        self._rows: list[tuple[Label, Sparkline]] = []

    def reset(self) -> None:
        self.remove_children()
        self._names = []
        self._rows = []
        self.mount(Label(EMPTY, classes="empty"))

    def sync(self, metrics: dict) -> None:
        names = list(metrics)
        if names != self._names:
            self.remove_children()
            self._names = names
            self._rows = [(Label(Text(one_line(name)), classes="metric-label"), Sparkline([])) for name in names]
            widgets = [w for row in self._rows for w in row] or [Label(EMPTY, classes="empty")]
            self.mount_all(widgets)
        for name, (label, spark) in zip(names, self._rows):
            series = list(metrics[name])
            if not series:
                continue
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(one_line(name), style="bold")
            line.append(f"  last {_num(series[-1])}  min {_num(min(series))}  max {_num(max(series))}"
                        f"  n {len(series)}", style="dim")
            label.update(line, layout=False)
            spark.data = series
