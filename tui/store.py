"""Reading the store from worker threads: the index for lists, the logs for one run, blobs.

SQLite and file reads block, so the dashboard never does them on the UI thread; every method
here is called from a Textual thread worker. One ``Index`` is opened lazily (the store may not
exist yet when the dashboard starts: it then waits for the first run to create it) and shared;
the index serialises its own connections.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from aethergraph.runtime import events as ev
from aethergraph.runtime.errors import StoreError
from aethergraph.runtime.info import AskInfo, RunInfo
from aethergraph.runtime.store.artifacts import BlobStore, check_name, sha_from_ref
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_log
from aethergraph.runtime.store.query import MemoryQuery
from aethergraph.runtime.textsafe import visible

from .format import json_block

__all__ = ["MemoryQuery", "StoreReader", "describe_blob", "event_json"]

PREVIEW_BYTES = 64 * 1024


class StoreReader:
    def __init__(self, home: str | Path | None) -> None:
        self.layout = StoreLayout.at(home)
        self.blobs = BlobStore(self.layout)
        self._index: Index | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def home(self) -> Path:
        return self.layout.home

    def exists(self) -> bool:
        return self.layout.exists()

    def index(self) -> Index | None:
        """The shared index, opened on first use once the store exists."""
        with self._lock:
            if self._closed:
                return None
            if self._index is None and self.layout.exists():
                self._index = Index(self.layout)
            return self._index

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._index is not None:
                self._index.close()
                self._index = None

    # -- lists ----------------------------------------------------------------------------------

    def runs(self, limit: int, before: tuple[float, str] | None = None) -> tuple[list[RunInfo], bool, int] | None:
        """A page of runs, newest first: the newest ``limit`` (``before`` None) or the
        ``limit`` older than ``before`` (the last row's (started, run_id)); whether there are
        more beyond it; and how many runs the index holds. None: no store yet."""
        index = self.index()
        if index is None:
            return None
        rows = index.runs_page(before=before, limit=limit + 1)
        return rows[:limit], len(rows) > limit, index.runs_count()

    def catch_up(self) -> int:
        """Index what logs hold beyond the index's marks (a runtime that died left some)."""
        index = self.index()
        return 0 if index is None else index.catch_up()

    def open_asks(self) -> list[AskInfo]:
        index = self.index()
        return [] if index is None else index.open_asks()

    def memory(self, query: MemoryQuery, limit: int = 200) -> list[ev.MemoryRecorded]:
        index = self.index()
        if index is None:
            return []
        return index.memory(msgspec.structs.replace(query, limit=limit))

    def artifacts(self, run_id: str | None = None, limit: int = 500) -> list[tuple[ev.ArtifactWritten, bool]]:
        index = self.index()
        if index is None:
            return []
        return index.artifact_rows(run_id=run_id, limit=limit)

    # -- one run --------------------------------------------------------------------------------

    def read_run(self, run_id: str) -> Iterator[ev.Event]:
        """The run's events one at a time, so a reader can stop part way (none: no log yet)."""
        path = self.layout.run_log(run_id)
        if not path.exists():
            return
        for rec in read_log(path, warn=False):
            yield rec.event

    # -- artifacts ------------------------------------------------------------------------------

    def preview(self, ref: str, limit: int = PREVIEW_BYTES) -> tuple[bytes, int]:
        """The first ``limit`` bytes of a blob and its full size."""
        path = self.blobs.path_for(sha_from_ref(ref))
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                return f.read(limit), size
        except FileNotFoundError:
            raise StoreError(f"artifact {ref} is not in this store") from None

    def export(self, ref: str, name: str, target: str | Path, *, force: bool = False) -> Path:
        """Copy a blob to ``target`` (a folder: under the artifact's name). Never overwrites
        unless ``force``; a name that would escape the folder is refused."""
        src = self.blobs.path_for(sha_from_ref(ref))
        dest = Path(target).expanduser()
        if dest.is_dir():
            dest = dest / check_name(name)
        if dest.exists() and not force:
            raise FileExistsError(f"{dest} exists")
        if not src.is_file():
            raise StoreError(f"artifact {ref} is not in this store")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return dest


def describe_blob(data: bytes, size: int, mime: str, name: str) -> tuple[str, str]:
    """(lexer, text) for a preview: pretty JSON, text, or a line saying it is binary."""
    truncated = size > len(data)
    looks_json = mime.endswith("json") or name.endswith(".json")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if truncated:  # cut mid-character?
            try:
                text = data[:-3].decode("utf-8", errors="strict")
            except UnicodeDecodeError:
                return "", f"binary, {size} bytes ({visible(mime) or 'unknown type'}); export it to look inside"
        else:
            return "", f"binary, {size} bytes ({visible(mime) or 'unknown type'}); export it to look inside"
    if looks_json or text.lstrip()[:1] in ("{", "["):
        if not truncated:
            try:
                return "json", visible(json.dumps(json.loads(text), indent=2, ensure_ascii=False))
            except ValueError:
                pass
    if truncated:
        text += f"\n… ({size - len(data)} more bytes; export to see all)"
    return ("json" if looks_json else ""), visible(text)


def event_json(e: Any) -> str:
    """An event as pretty JSON for a person, its strings' control characters shown."""
    return json_block(e)
