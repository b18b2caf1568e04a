"""Where things live inside a store directory, and how its files are created.

The store holds runs' inputs, answers and artifacts: it is private whatever the umask.
Folders are created 0700 and files 0600 (``private_dirs``, ``open_private``), so nothing
another user could read is ever created, not even for a moment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import attrs

from ..errors import UnknownRun
from ..ids import RUN_ID_RE

DIR_MODE = 0o700
FILE_MODE = 0o600

HOME_ENV = "AETHERGRAPH_HOME"
DEFAULT_HOME = ".aethergraph"


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The store directory: the argument, else ``$AETHERGRAPH_HOME``, else ``./.aethergraph``."""
    if home is None:
        home = os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(home).expanduser().absolute()


def private_dirs(path: str | os.PathLike[str]) -> None:
    """``mkdir -p`` whose every created folder is 0700 (``Path.mkdir(parents=True)`` gives
    the parents the umask's default instead)."""
    path = Path(path)
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)  # the umask can only take bits away from 0700
        except FileExistsError:
            pass


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open`` creating (with ``O_CREAT`` in ``flags``) a 0600 file; also an ``opener``
    for ``open()``."""
    return os.open(path, flags, FILE_MODE)


def touch_private(path: str | os.PathLike[str]) -> None:
    """Create ``path`` empty and 0600 unless it exists: done before SQLite opens a database,
    so it and its -wal/-shm files (which SQLite gives the database's mode) are private."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    except FileExistsError:
        pass


@attrs.frozen
class StoreLayout:
    home: Path

    @classmethod
    def at(cls, home: str | os.PathLike[str] | None = None) -> "StoreLayout":
        return cls(resolve_home(home))

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def index_path(self) -> Path:
        return self.home / "index.sqlite"

    @property
    def kv_path(self) -> Path:
        return self.home / "kv.sqlite"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    @property
    def runtimes_dir(self) -> Path:
        return self.home / "runtimes"

    def ensure(self) -> "StoreLayout":
        if not self.home.is_dir():
            self.home.parent.mkdir(parents=True, exist_ok=True)  # outside the store: not ours
            private_dirs(self.home)
        for d in (self.runs_dir, self.artifacts_dir, self.tmp_dir, self.runtimes_dir):
            private_dirs(d)
        return self

    def exists(self) -> bool:
        return self.runs_dir.is_dir()

    def run_log(self, run_id: str) -> Path:
        """The log file of a run; its folder comes from the date at the front of the id.

        An id a person chose (``ag run --run-id nightly-2026-12-01``) has no date: its log is
        ``runs/named/<id>.jsonl``. Such ids are ``NAMED_RUN_ID_RE`` (lower case, digits, ``._-``,
        starting with a letter or digit, at most 100): one path segment, never a way out of the
        store, and the same file on a case-insensitive disk as on any other."""
        m = RUN_ID_RE.match(run_id)
        if m is None:
            if NAMED_RUN_ID_RE.match(run_id) is None:
                raise UnknownRun(run_id)
            return Path(f"{self.home}/runs/{NAMED_DIR}/{run_id}.jsonl")
        # One Path from one string: this runs for every run started.
        return Path(f"{self.home}/runs/{m.group(1)}/{m.group(2)}/{run_id}.jsonl")

    def existing_run_log(self, run_id: str) -> Path:
        path = self.run_log(run_id)
        if not path.is_file():
            raise UnknownRun(run_id)
        return path

    def iter_logs(self) -> Iterator[Path]:
        """Every run log, oldest folder first."""
        if not self.runs_dir.is_dir():
            return
        for year in sorted(self.runs_dir.iterdir()):
            if not year.is_dir():
                continue
            if year.name == NAMED_DIR:  # runs/named/<id>.jsonl: runs whose id a person chose
                for entry in sorted(os.scandir(year), key=lambda e: e.name):
                    if entry.name.endswith(".jsonl") and entry.is_file():
                        yield Path(entry.path)
                continue
            for month in sorted(year.iterdir()):
                if not month.is_dir():
                    continue
                for entry in sorted(os.scandir(month), key=lambda e: e.name):
                    if entry.name.endswith(".jsonl") and entry.is_file():
                        yield Path(entry.path)


# Run ids a person chooses (``--run-id``, ``run(fn, run_id=...)``); see ``StoreLayout.run_log``.
NAMED_RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
NAMED_DIR = "named"
