"""Answer a files ask (``channel().ask_files``) from the dashboard: a directory tree of the
machine the dashboard runs on.

Enter on a file picks it (again: unpicks it), ``s`` sends what is picked; paths can also be
typed (several, shell-quoted) and enter sends them. The picked files are checked and copied into the store here, off the
event loop — as ``ag answer --file`` does — and the answer sent is what was stored; a refusal
(no such file, a directory, too large, not an accepted kind) is shown and the dialog stays open.
The runtime checks the answer again (count, size limit) and may refuse it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Static
from textual.worker import get_current_worker

from aethergraph.runtime import events as ev
from aethergraph.runtime.asks import split_paths, store_paths
from aethergraph.runtime.errors import InvalidAnswer
from aethergraph.runtime.store.artifacts import BlobStore

from ..format import one_line, visible
from ..messages import AnswerDone, AnswerSubmitted


class FilePickerModal(ModalScreen[str | None]):
    """Pick the file(s) that answer ``ask`` (an ``AskInfo`` of kind ``files``)."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("s", "send", "Send", show=False)]
    DEFAULT_CSS = """
    FilePickerModal { align: center middle; }
    FilePickerModal > #files-dialog { width: 90%; height: 80%; border: round $accent; padding: 0 1; }
    FilePickerModal DirectoryTree { height: 1fr; }
    """

    def __init__(self, ask: Any, *, root: str | Path | None = None) -> None:
        super().__init__()
        self.ask = ask
        self.root = Path(root) if root is not None else Path.cwd()
        # What the ask takes: its accept patterns travel as its options; how many files and how
        # large are the runtime's to enforce (it refuses the answer otherwise, said here).
        self.spec = ev.FileAskSpec(accept=list(ask.options), multiple=True, max_bytes=1 << 62)
        self.picked: list[Path] = []

    def compose(self) -> ComposeResult:
        a = self.ask
        with Vertical(id="files-dialog"):
            title = Text(no_wrap=True, overflow="ellipsis")
            title.append("FILES ASK ", style="bold")
            # (the ask is the run's text: untrusted, its control characters shown, never markup)
            title.append(one_line(a.ask_id))
            title.append(f"  run {one_line(a.run_id)}", style="dim")
            yield Static(title, id="files-title")
            yield Static(Text(visible(a.prompt)), id="files-prompt")
            if a.options:
                yield Static(Text("accepts " + one_line(", ".join(a.options)), style="dim"), id="files-accept")
            yield DirectoryTree(str(self.root), id="files-tree")
            yield Input(placeholder="or type a path; enter sends", id="files-input", compact=True)
            yield Static("", id="files-picked", markup=False)
            yield Static("", id="files-error", markup=False)
            yield Static("enter on a file: pick · s: send the picked · esc: close", classes="hint", markup=False)

    def on_mount(self) -> None:
        self.query_one(DirectoryTree).focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        path = Path(event.path)
        if path in self.picked:
            self.picked.remove(path)
        else:
            self.picked.append(path)
        self._show_picked()

    def _show_picked(self) -> None:
        names = one_line(", ".join(p.name for p in self.picked))
        self.query_one("#files-picked", Static).update(f"picked: {names}" if names else "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.picked = [Path(p).expanduser() for p in split_paths(event.value, True)]
        except InvalidAnswer as exc:
            self.query_one("#files-error", Static).update(one_line(f"✗ {exc}"))
            return
        self._show_picked()
        self.action_send()

    def action_send(self) -> None:
        if not self.picked:
            self.query_one("#files-error", Static).update("✗ pick a file first")
            return
        self.query_one("#files-error", Static).update("sending…")
        self._store([str(p) for p in self.picked])

    @dataclass
    class Stored(Message, bubble=False):
        """The picked files, checked and copied into the store: ``value`` is the answer to
        send (``error``: why they were refused)."""

        value: str = ""
        error: str = ""

    @work(thread=True, exclusive=True, group="answer")
    def _store(self, paths: list[str]) -> None:
        layout = self.app.store.layout  # type: ignore[attr-defined]
        try:
            stored = self.Stored(store_paths(BlobStore(layout), paths, self.spec))
        except InvalidAnswer as exc:
            stored = self.Stored(error=str(exc))
        if not get_current_worker().is_cancelled:
            self.post_message(stored)

    def on_file_picker_modal_stored(self, msg: Stored) -> None:
        if msg.error:
            self.picked.clear()
            self._show_picked()
            self.query_one("#files-error", Static).update(one_line(f"✗ {msg.error}"))
            return
        self.post_message(AnswerSubmitted(self.ask, msg.value, self))

    def on_answer_done(self, msg: AnswerDone) -> None:
        if msg.outcome.error:  # the runtime refused it (count, size): said here, the dialog stays
            self.query_one("#files-error", Static).update(one_line(f"✗ {msg.outcome.error}"))
        else:
            self.dismiss(msg.outcome.answer)

    def action_close(self) -> None:
        self.dismiss(None)
