"""Panel 5 — Artifacts: what runs wrote, who wrote it, a preview, and export to a path.

The list and its provenance (run, node, tool, time) come from the index; a preview reads at
most 64 KiB of the blob in a worker thread (JSON is pretty-printed, binary is only described);
export copies the blob and never overwrites a file without a second, deliberate enter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from ..format import clip, one_line, plain, short_when, visible, when
from ..messages import OpenRun
from ..store import describe_blob
from ..widgets import FilterInput, RowTable
from .base import ListScreen


def human_size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


class ArtifactsScreen(ListScreen):
    MODE = "artifacts"
    TABLE, FILTER = "artifacts-table", "artifacts-filter"
    HELP = "Artifacts runs wrote, newest first, with provenance. The highlighted one is previewed; e exports it."
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("e", "export", "Export"),
        Binding("o", "open_run", "Open run"),
        Binding("f", "full_ref", "Full ref", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]
    COLUMNS = (("name", "NAME", 0), ("size", "SIZE", 7), ("run", "RUN", 14), ("node", "NODE", 18),
               ("written", "WRITTEN", 12))

    @dataclass
    class Listed(Message, bubble=False):
        """The artifacts list, read from the index (``error``: why it could not be)."""

        rows: list
        error: str = ""

    @dataclass
    class BlobRead(Message, bubble=False):
        """The start of an artifact's blob, described for the preview (``lexer``: how to
        highlight ``text``; none: plain text)."""

        ref: str
        lexer: str
        text: str

    def __init__(self) -> None:
        super().__init__()
        self._rows: list = []
        self._by_key: dict[str, object] = {}
        self._loaded_version = -1
        self._previewing = ""
        self._full_ref = False
        self.preview: tuple[str, str] = ("", "")

    def compose_body(self) -> ComposeResult:
        yield FilterInput("filter by name, run, node or mime (esc clears)", id="artifacts-filter")
        yield RowTable("artifacts-table", self.COLUMNS)
        with VerticalScroll(id="artifact-preview"):
            yield Static("", id="artifact-meta", markup=False)
            yield Static("", id="artifact-body")
        yield Static("", id="artifacts-status", markup=False)

    def rows_changed(self) -> None:
        self._draw()

    def sync(self, force: bool = False) -> None:
        # Reload when runs moved on (a run may have written something) — at most once a tick.
        version = self.dash.state.runs_version
        if force or version != self._loaded_version:
            self._loaded_version = version
            self._load()

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="artifacts")
    def _load(self) -> None:
        try:
            rows, error = self.dash.store.artifacts(limit=500), ""
        except Exception as exc:
            rows, error = [], f"✗ {type(exc).__name__}: {exc}"
        if not get_current_worker().is_cancelled:
            self.post_message(self.Listed(rows, error))

    def on_artifacts_screen_listed(self, msg: Listed) -> None:
        rows, error = msg.rows, msg.error
        if error:
            self.query_one("#artifacts-status", Static).update(visible(error), layout=False)
        if [(a.ref, a.seq, a.run_id) for a, _ in rows] == [(a.ref, a.seq, a.run_id) for a, _ in self._rows]:
            return
        self._rows = rows
        self._draw()

    def _matches(self, a) -> bool:
        f = self.filter
        return not f or any(f in s.casefold() for s in (a.name, a.run_id, a.node, a.mime, a.tool, a.kind))

    def _draw(self) -> None:
        table = self.table
        if not table.laid_out_width:
            return
        keep = table.selected_key()
        name_w = table.width_of("name")
        table.clear()
        self._by_key = {}
        for a, pinned in self._rows:
            if not self._matches(a):
                continue
            key = f"{a.run_id}:{a.seq}"
            self._by_key[key] = (a, pinned)
            node = a.node.rsplit("/", 1)[-1] + (f"({a.tool})" if a.tool and a.tool not in a.node else "")
            table.add_row(Text(clip(a.name, name_w - 1)), human_size(a.size), plain(a.run_id[-13:]),
                          Text(clip(node, 17)), short_when(a.ts), key=key)
        table.restore_cursor(keep)
        status = self.query_one("#artifacts-status", Static)
        if not self._rows:
            status.update("no artifacts yet (context.artifacts().write_text(...) makes one)")
            self.query_one("#artifact-meta", Static).update("")
            self.query_one("#artifact-body", Static).update("")
        else:
            status.update(f"{len(self._by_key)} of {len(self._rows)} artifacts · e: export · ↑↓: preview",
                          layout=False)
            if table.row_count and not keep:
                self._preview(table.selected_key())

    # -- preview --------------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview(event.row_key.value)

    def _preview(self, key: str | None) -> None:
        item = self._by_key.get(key) if key else None
        if item is None or key == self._previewing:
            return
        self._previewing = key
        a, pinned = item
        meta = (f"{one_line(a.name)} · {a.size} bytes · {one_line(a.mime) or 'unknown type'}" +
                (" · pinned" if pinned else "") +
                (f" · {one_line(a.ref)}\n" if self._full_ref else f" · {one_line(a.ref[:24])}…(f)\n") +
                f"written {when(a.ts)} by run {one_line(a.run_id)} · node {one_line(a.node) or '-'}" +
                (f" ({one_line(a.tool)})" if a.tool else ""))
        self.query_one("#artifact-meta", Static).update(Text(meta))
        self.query_one("#artifact-body", Static).update(Text("reading…", style="dim"))
        self._read_blob(a)

    @work(thread=True, exclusive=True, group="artifact-preview")
    def _read_blob(self, a) -> None:
        try:
            data, size = self.dash.store.preview(a.ref)
            lexer, text = describe_blob(data, size, a.mime, a.name)
        except Exception as exc:
            lexer, text = "", f"✗ {exc}"
        if not get_current_worker().is_cancelled:  # (another row was highlighted meanwhile)
            self.post_message(self.BlobRead(a.ref, lexer, text))

    def on_artifacts_screen_blob_read(self, msg: BlobRead) -> None:
        ref, lexer, text = msg.ref, msg.lexer, msg.text
        body = self.query_one("#artifact-body", Static)
        self.preview = (ref, text)  # what is shown, for whoever asks (tests, the palette)
        text = visible(text)  # describe_blob did already; an error message had not
        if lexer:
            body.update(Syntax(text, lexer, word_wrap=True, background_color="default"))
        else:
            body.update(Text(text))

    # -- keys -----------------------------------------------------------------------------------

    def _selected(self):
        key = self.table.selected_key()
        return self._by_key.get(key) if key else None

    def yank_target(self) -> tuple[str, str] | None:
        item = self._selected()
        return ("artifact ref", item[0].ref) if item else None

    def action_full_ref(self) -> None:
        """f: the whole ref in the provenance line, or back to its first characters."""
        self._full_ref = not self._full_ref
        key = self._previewing
        self._previewing = ""
        self._preview(key)

    def action_export(self) -> None:
        item = self._selected()
        if item is None:
            self.notify("No artifact selected.", severity="warning")
            return
        self.app.push_screen(ExportModal(item[0]))

    def action_open_run(self) -> None:
        item = self._selected()
        self.request(OpenRun, item and item[0].run_id)


class ExportModal(ModalScreen[Path | None]):
    """Where to copy an artifact. An existing file is only replaced on a second enter."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, artifact) -> None:
        super().__init__()
        self.artifact = artifact
        self._confirm_overwrite: str | None = None

    def compose(self) -> ComposeResult:
        a = self.artifact
        with Vertical(id="export-dialog", classes="dialog"):
            yield Static(Text.assemble(("EXPORT ", "bold"), one_line(a.name), (f"  {a.size} bytes", "dim")))
            yield Static(Text(one_line(a.ref), style="dim"))
            # A name with control characters is offered with them made visible, as shown.
            yield Input(value=str(Path.cwd() / Path(one_line(a.name)).name), id="export-path", compact=True)
            yield Static("", id="export-error", markup=False)
            yield Static("enter: export (a folder: under the artifact's name) · esc: close", classes="hint",
                         markup=False)

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    def on_input_changed(self, _: Input.Changed) -> None:
        self._confirm_overwrite = None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        target = event.value.strip()
        if not target:
            self.query_one("#export-error", Static).update("✗ give a path")
            return
        self._export(target, force=self._confirm_overwrite == target)

    @dataclass
    class Exported(Message, bubble=False):
        """How an export went: ``dest`` written, or ``error`` (``exists``: the file is there
        already, and a second enter replaces it)."""

        target: str
        dest: Any = None
        error: str = ""
        exists: bool = False

    @work(thread=True, exclusive=True, group="export")
    def _export(self, target: str, force: bool) -> None:
        a = self.artifact
        try:
            dest = self.app.store.export(a.ref, a.name, target, force=force)  # type: ignore[attr-defined]
        except FileExistsError as exc:
            done = self.Exported(target, error=f"{exc}: press enter again to overwrite it", exists=True)
        except Exception as exc:
            done = self.Exported(target, error=f"✗ {exc}")
        else:
            done = self.Exported(target, dest)
        if not get_current_worker().is_cancelled:
            self.post_message(done)

    def on_export_modal_exported(self, msg: Exported) -> None:
        if msg.error:
            if msg.exists:
                self._confirm_overwrite = msg.target
            self.query_one("#export-error", Static).update(visible(msg.error))
            return
        self.notify(f"exported to {msg.dest}")
        self.dismiss(msg.dest)

    def action_close(self) -> None:
        self.dismiss(None)
