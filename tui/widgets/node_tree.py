"""A run's nodes as a tree: state, attempts, and the error of a node that failed.

Redrawn incrementally — new nodes are added under their parent, changed ones relabelled — so a
run with thousands of tool calls does not rebuild the whole tree on every event.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ..format import NODE_MARK, STATUS_STYLE, one_line


def node_label(name: str, state: str, attempts: int, error: str = "") -> Text:
    label = Text(no_wrap=True, overflow="ellipsis")
    label.append(NODE_MARK.get(state, "?"), style=STATUS_STYLE.get(state, ""))
    label.append(f" {one_line(name)} ")
    label.append(one_line(state.replace("_", " ")), style=STATUS_STYLE.get(state, "dim"))
    if attempts > 1:
        label.append(f" ×{attempts}", style="bold")
    return label


class NodeTree(Tree[str]):
    """Tree data is the node path ("" for the run itself), which the actions act on."""

    def __init__(self, id: str) -> None:
        super().__init__("run", data="", id=id)
        self.show_root = True
        self.guide_depth = 2
        self._tree_nodes: dict[str, TreeNode[str]] = {}
        self._labels: dict[str, tuple] = {}
        self.run_id = ""

    def reset(self, run_id: str) -> None:
        self.clear()
        self.root.set_label(Text(run_id, style="bold"))
        self.root.data = ""
        self._tree_nodes = {}
        self._labels = {}
        self.run_id = run_id

    def sync(self, run_id: str, graph: str, status: str, nodes: dict) -> None:
        root_key = ("root", graph, status)
        if self._labels.get("") != root_key:
            self._labels[""] = root_key
            label = Text(no_wrap=True, overflow="ellipsis")
            label.append("run ", style="bold")
            label.append(one_line(status.upper()), style=STATUS_STYLE.get(status, ""))
            self.root.set_label(label)
        for path, n in nodes.items():
            key = (n.state, n.attempts)
            tree_node = self._tree_nodes.get(path)
            if tree_node is None:
                parent = self._tree_nodes.get(n.parent, self.root)
                tree_node = parent.add(node_label(n.name, n.state, n.attempts), data=path, expand=True,
                                       allow_expand=False)
                self._tree_nodes[path] = tree_node
                self._labels[path] = key
                if parent is not self.root:
                    parent.allow_expand = True
                self.root.expand()
            elif self._labels.get(path) != key:
                self._labels[path] = key
                tree_node.set_label(node_label(n.name, n.state, n.attempts))

    @property
    def selected_path(self) -> str:
        node = self.cursor_node
        return "" if node is None or node.data is None else node.data

