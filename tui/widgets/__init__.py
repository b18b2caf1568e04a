"""Widgets shared by the screens.

Imported lazily (PEP 562), as the screens are: the Runs panel, all the first paint needs, uses
the tables, the filter line and the top bar; the run panel's widgets (the node tree on Textual's
``Tree``, the metrics on its ``Sparkline``, the progress bars) load when that panel is first shown.
"""

from ..lazy import exports

# module: the names it exports
_MODULES = {"filter_input": ("FilterInput",), "footer": ("SteadyFooter",), "metrics": ("MetricsPanel",), "node_tree": ("NodeTree",),
            "progress": ("ProgressPanel",), "tables": ("AsksTable", "RowTable", "RunsTable"), "topbar": ("TopBar",)}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_WHERE)

__getattr__ = exports(__name__, _WHERE)
