"""A run's nodes as a tree: state, attempts, and the error of a node that failed.

Redrawn incrementally — new nodes are added under their parent, changed ones relabelled — so a
run with thousands of tool calls does not rebuild the whole tree on every event.

Same-name siblings (a graph calling ``child_job`` fifty times) are grouped once there are
``GROUP_AT`` of them: one collapsed line ``child_job ×50 — 45 ✓ 3 ▶ 2 ✗`` that expands to the
calls, each labelled with its ``#n`` (the step's place among its same-name siblings).
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from aethergraph.runtime import events as ev

from ..format import NODE_MARK, STATUS_STYLE, one_line

GROUP_AT = 5
# Counted in a group's label, most severe last (the eye ends on the failures).
GROUP_ORDER = (ev.SUCCEEDED, ev.RUNNING, ev.CANCELLED, ev.TIMED_OUT, ev.FAILED)


def node_label(name: str, state: str, attempts: int, error: str = "") -> Text:
    label = Text(no_wrap=True, overflow="ellipsis")
    label.append(NODE_MARK.get(state, "?"), style=STATUS_STYLE.get(state, ""))
    label.append(f" {one_line(name)} ")
    label.append(one_line(state.replace("_", " ")), style=STATUS_STYLE.get(state, "dim"))
    if attempts > 1:
        label.append(f" ×{attempts}", style="bold")
    return label


def shown_name(path: str, name: str) -> str:
    """The name with its ``#n`` when it is not the first call of that name (``fetch #3``)."""
    last = path.rsplit("/", 1)[-1]
    base, sep, n = last.partition("#")
    return f"{name} #{n}" if sep and n.isdigit() else name


def group_label(name: str, states: list[str]) -> Text:
    label = Text(no_wrap=True, overflow="ellipsis")
    label.append(f"{one_line(name)} ×{len(states)}", style="bold")
    label.append(" —")
    for state in GROUP_ORDER:
        count = states.count(state)
        if count:
            label.append(f" {count} ")
            label.append(NODE_MARK.get(state, "?"), style=STATUS_STYLE.get(state, ""))
    return label


class NodeTree(Tree[str]):
    """Tree data is the node path ("" for the run itself), which the actions act on; a group
    line has no path (None: the actions ask for a node)."""

    BINDINGS = [
        Binding("g,home", "first_node", "First node", show=False),
        Binding("G,end", "last_node", "Last node", show=False),
    ]

    def __init__(self, id: str) -> None:
        super().__init__("run", data="", id=id)
        self.show_root = True
        self.guide_depth = 2
        self._reset_maps()
        self.run_id = ""

    def _reset_maps(self) -> None:
        self._by_path: dict[str, TreeNode[str]] = {}
        self._labels: dict[str, tuple] = {}
        self._siblings: dict[tuple[str, str], list[str]] = {}  # (parent, name) -> paths
        self._groups: dict[tuple[str, str], TreeNode] = {}
        self._group_labels: dict[tuple[str, str], tuple] = {}

    @property
    def paths(self) -> list[str]:
        """The node paths drawn in the tree, in the order they were added."""
        return list(self._by_path)

    @property
    def group_lines(self) -> list[TreeNode]:
        """The collapsed lines that gather many calls of one name."""
        return list(self._groups.values())

    def reset(self, run_id: str) -> None:
        self.clear()
        self.root.set_label(Text(run_id, style="bold"))
        self.root.data = ""
        self._reset_maps()
        self.run_id = run_id

    def sync(self, run_id: str, graph: str, status: str, nodes: dict) -> None:
        root_key = ("root", graph, status)
        if self._labels.get("") != root_key:
            self._labels[""] = root_key
            label = Text(no_wrap=True, overflow="ellipsis")
            label.append("run ", style="bold")
            label.append(one_line(status.upper()), style=STATUS_STYLE.get(status, ""))
            self.root.set_label(label)
        touched: set[tuple[str, str]] = set()
        for path, n in nodes.items():
            key = (n.state, n.attempts)
            tree_node = self._by_path.get(path)
            if tree_node is None:
                self._add(path, n, nodes)
                touched.add((n.parent, n.name))
            elif self._labels.get(path) != key:
                self._labels[path] = key
                tree_node.set_label(node_label(shown_name(path, n.name), n.state, n.attempts))
                touched.add((n.parent, n.name))
        for sib in touched:
            group = self._groups.get(sib)
            if group is not None:
                states = [nodes[p].state for p in self._siblings[sib] if p in nodes]
                key = tuple(states.count(s) for s in GROUP_ORDER)
                if self._group_labels.get(sib) != key:
                    self._group_labels[sib] = key
                    group.set_label(group_label(sib[1], states))

    def _add(self, path: str, n, nodes: dict) -> None:
        sib = (n.parent, n.name)
        paths = self._siblings.setdefault(sib, [])
        paths.append(path)
        group = self._groups.get(sib)
        parent = self._by_path.get(n.parent, self.root)
        if group is None and len(paths) >= GROUP_AT:
            # Enough of the same name: one collapsed line for them, the calls under it.
            group = parent.add(group_label(n.name, []), data=None, expand=False)
            self._groups[sib] = group
            for old in paths[:-1]:
                self._move_under(old, group, nodes)
        target = group or parent
        self._put(target, path, n)
        if parent is not self.root:
            parent.allow_expand = True
        self.root.expand()

    def _put(self, target: TreeNode, path: str, n) -> TreeNode:
        tree_node = target.add(node_label(shown_name(path, n.name), n.state, n.attempts), data=path,
                               expand=True, allow_expand=False)
        self._by_path[path] = tree_node
        self._labels[path] = (n.state, n.attempts)
        return tree_node

    def _move_under(self, path: str, group: TreeNode, nodes: dict) -> None:
        """Re-add a node, and everything drawn under it, beneath its group line."""
        kids: dict[str, list[str]] = {}
        for p, c in nodes.items():
            if p in self._by_path:
                kids.setdefault(c.parent, []).append(p)
        old = self._by_path.get(path)
        if old is not None:
            old.remove()

        def readd(target: TreeNode, p: str) -> None:
            node = self._put(target, p, nodes[p])
            for child in kids.get(p, ()):
                node.allow_expand = True
                readd(node, child)

        readd(group, path)

    @property
    def selected_path(self) -> str:
        node = self.cursor_node
        return "" if node is None or node.data is None else node.data

    def action_first_node(self) -> None:
        self.cursor_line = 0

    def action_last_node(self) -> None:
        self.cursor_line = max(0, self.last_line)
