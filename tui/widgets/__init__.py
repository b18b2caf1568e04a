"""Widgets shared by the screens.

Imported lazily (PEP 562), as the screens are: the Runs panel, all the first paint needs, uses
the tables, the filter line and the top bar; the run panel's widgets (the node tree on Textual's
``Tree``, the metrics on its ``Sparkline``, the progress bars) load when that panel is first shown.
"""

from importlib import import_module

_WHERE = {
    "AsksTable": "tables",
    "FilterInput": "filter_input",
    "MetricsPanel": "metrics",
    "NodeTree": "node_tree",
    "ProgressPanel": "progress",
    "RowTable": "tables",
    "RunsTable": "tables",
    "TopBar": "topbar",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(name)
