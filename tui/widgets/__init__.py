"""Widgets shared by the screens."""

from .filter_input import FilterInput
from .metrics import MetricsPanel
from .node_tree import NodeTree
from .progress import ProgressPanel
from .tables import AsksTable, RowTable, RunsTable
from .topbar import TopBar

__all__ = ["AsksTable", "FilterInput", "MetricsPanel", "NodeTree", "ProgressPanel", "RowTable", "RunsTable", "TopBar"]
