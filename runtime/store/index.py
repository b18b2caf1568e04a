"""The SQLite index: derived from the logs, never the other way round.

What it answers fast: memory events by kind, tag, entity, run, graph, node, time and full text;
the list of runs with their state; artifacts with their provenance; open asks.

How it stays honest: for every log file it stores how many bytes of it are indexed
(``logs.indexed_bytes``). Every ingest — the live writer's batches, the catch-up on open, a
rebuild — runs in one ``BEGIN IMMEDIATE`` transaction that only takes bytes past that mark and
moves the mark. So a crash between log and index loses nothing (the next open catches up), two
processes indexing the same log never insert an event twice, and ``rebuild`` is just a catch-up
from zero.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from bisect import bisect_left
from itertools import chain
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from ..events import (
    DECODER,
    ArtifactPinned,
    ArtifactWritten,
    AskAnswered,
    AskExpired,
    AskOpened,
    Event,
    JobStateChanged,
    JobSubmitted,
    Log,
    MemoryRecorded,
    MessageSent,
    Progress,
    RunFinished,
    RunResumed,
    RunStarted,
)
from ..info import AskInfo, RunInfo
from . import owner
from .layout import StoreLayout, private_dirs, touch_private
from .logfile import CHUNK, BadLine, complete_size, read_log
from .query import MemoryQuery
from .vectors import VECTORS_SCHEMA, vector_row
from .vectors import insert_rows as insert_vectors
from .segment import Segment

log = logging.getLogger("aethergraph.store")

SCHEMA_VERSION = 7  # 6: the jobs table; 7: memory_vectors (runtime/store/vectors.py)

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs(
    file_id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    indexed_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs(
    run_id TEXT PRIMARY KEY,
    graph TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'running',
    started REAL,
    finished REAL,
    pid INTEGER,
    host TEXT,
    entrypoint TEXT,
    attempt_of TEXT,
    error TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_ts REAL,
    events INTEGER NOT NULL DEFAULT 0,
    pending_asks INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started);
CREATE TABLE IF NOT EXISTS names(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
-- id is the event's time in microseconds (bumped by one on a tie), so every index that ends
-- in the rowid — all of them — lists events in time order, and "newest first" never sorts.
CREATE TABLE IF NOT EXISTS memory(
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    graph INTEGER NOT NULL,
    node INTEGER NOT NULL,
    topic INTEGER NOT NULL,
    -- where the event's line is: the log (logs.file_id), byte offset and length. The index
    -- keeps no copy of the event: writing one costs more than all the keys together.
    file INTEGER NOT NULL,
    off INTEGER NOT NULL,
    len INTEGER NOT NULL
);
-- Two indexes only (each costs every insert): a graph-scoped query drives from kind or from
-- the time order and checks the graph on the rows it reads.
CREATE INDEX IF NOT EXISTS memory_kind ON memory(kind);
CREATE INDEX IF NOT EXISTS memory_run ON memory(run);
CREATE TABLE IF NOT EXISTS memory_tags(
    tag INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY(tag, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memory_entities(
    entity INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY(entity, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memory_metrics(
    name INTEGER NOT NULL, id INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY(name, id))
    WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(body, content='', tokenize='unicode61');
CREATE TABLE IF NOT EXISTS artifacts(
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    ref TEXT NOT NULL,
    name TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    node TEXT NOT NULL,
    tool TEXT NOT NULL,
    ts REAL NOT NULL,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    kind TEXT NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_sha ON artifacts(sha256);
CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts(run_id, seq);
CREATE INDEX IF NOT EXISTS artifacts_ts ON artifacts(ts);
CREATE TABLE IF NOT EXISTS asks(
    ask_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    prompt TEXT NOT NULL,
    options TEXT NOT NULL,
    opened REAL NOT NULL,
    timeout_s REAL,
    status TEXT NOT NULL DEFAULT 'open',
    answer TEXT,
    answered_by TEXT,
    closed REAL
);
CREATE INDEX IF NOT EXISTS asks_status ON asks(status, opened);
"""

# Jobs a run submitted (runtime/jobs), fed by job_submitted / job_state events. The job folder
# in the store is the truth about a job still running; this table is what the runs knew.
JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs(
    job_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    node TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    runner TEXT NOT NULL DEFAULT '',
    key TEXT NOT NULL DEFAULT '',
    argv TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL DEFAULT 'queued',
    submitted REAL,
    started REAL,
    ended REAL,
    exit_code INTEGER,
    error TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_run ON jobs(run_id);
"""
SCHEMA += JOBS_SCHEMA
SCHEMA += VECTORS_SCHEMA

# Emptied by a rebuild. ``names`` is kept: interned ids never change, so a process that has
# them cached stays right while another one rebuilds.
TABLES = ("logs", "runs", "memory", "memory_tags", "memory_entities", "memory_metrics",
          "memory_fts", "artifacts", "asks", "jobs", "memory_vectors")

MEMORY_DECODER = msgspec.json.Decoder(MemoryRecorded)
ARTIFACT_DECODER = msgspec.json.Decoder(ArtifactWritten)
_JSON = msgspec.json.Encoder()


# The write connection gives up waiting inside SQLite after this long, so that
# ``_retry_locked`` can say what it is waiting for before it waits on.
LOCK_NOTICE_MS = 2000


def _connect(path: Path, busy_ms: int = 60000) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    return conn


_last_notice = 0.0


def _notice_wait(what: str) -> None:
    """One line on the wait; in a long-lived process at most once a minute."""
    global _last_notice
    now = time.monotonic()
    if now - _last_notice >= 60 or _last_notice == 0.0:
        _last_notice = now
        log.warning("waiting for %s held by another process…", what)


def _retry_locked(fn, *args, what: str = "the index lock"):
    """Run ``fn`` retrying on SQLITE_BUSY beyond the busy timeout (another process's long
    ingest). Many processes share one store; none of them should surface a lock error, and
    none should wait in silence: the first time it has to wait on, it says so, once."""
    delay = 0.01
    deadline = time.monotonic() + 300
    told = False
    while True:
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            if not told:
                told = True
                _notice_wait(what)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def writer_is_gone(layout: StoreLayout, run_id: str) -> bool:
    """Is nobody on this host writing this run's log? The owner lock says (see ``owner``);
    a reader asks, it never takes the lock and never writes."""
    return owner.holder(layout, run_id) is None


def time_key(ts: float) -> int:
    """A memory event's place in time order: microseconds since the epoch."""
    return int(ts * 1_000_000)


def fts_query(text: str) -> str:
    """User text as an FTS5 query: every word must appear; no FTS syntax can leak in."""
    words = [w for w in text.split() if w]
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


class CorruptIndex(Exception):
    """The index file is not an index of ours (garbage, another schema, a table missing)."""


def is_corruption(exc: BaseException) -> bool:
    """SQLite's own word that a file is damaged or not a database (not a lock, not a full
    disk: those are the machine's state, and setting the index aside would not help)."""
    if isinstance(exc, CorruptIndex):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    return type(exc) is sqlite3.DatabaseError


def _expected_columns() -> dict[str, list[str]]:
    """Every table of ``SCHEMA`` with its columns, as SQLite itself reads the schema."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(SCHEMA)
        return _columns(mem)
    finally:
        mem.close()


def _columns(c: sqlite3.Connection) -> dict[str, list[str]]:
    tables = [r[0] for r in c.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    return {t: [r[1] for r in c.execute(f'PRAGMA table_info("{t}")')] for t in tables}


_EXPECTED: dict[str, list[str]] | None = None
_EXPECTED_INDEXES = frozenset(
    line.split()[5] for line in SCHEMA.splitlines() if line.startswith("CREATE INDEX IF NOT EXISTS"))


def _expected() -> dict[str, list[str]]:
    global _EXPECTED
    if _EXPECTED is None:
        _EXPECTED = _expected_columns()
    return _EXPECTED


def schema_problem(c: sqlite3.Connection) -> str | None:
    """What makes this database not our index's shape: a table missing or its columns wrong."""
    have = _columns(c)
    for table, columns in _expected().items():
        if table not in have:
            return f"table {table} is missing"
        if have[table] != columns:
            return f"table {table} has columns {have[table]}, not {columns}"
    return None


def set_aside(layout: StoreLayout, inode: int | None = None) -> Path | None:
    """Rename a bad index (and its -wal/-shm) to ``index.sqlite.corrupt-<time>``, so the next
    open starts a fresh one; kept, not deleted, for whoever wants to look at it.

    Under a lock file, and only if ``inode`` is still the file at the index's path: two
    processes that found the same bad index set it aside once, never the other's fresh one."""
    path = layout.index_path
    lock = os.open(layout.home / "index.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if inode is not None and os.stat(path).st_ino != inode:
                return None  # someone else set it aside already
        except FileNotFoundError:
            return None
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
        aside = Path(f"{path}.corrupt-{stamp}")
        for suffix in ("-wal", "-shm", ""):  # the database last: no fresh one pairs with old WAL
            try:
                os.rename(f"{path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                pass
        return aside
    finally:
        os.close(lock)


class Index:
    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        self.path = layout.index_path
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        # Interned names of the current ingest transaction (cleared by each ``_Batch``).
        self._names: dict[str, int] = {}
        self._paths: dict[int, str] = {}
        if not layout.home.is_dir():
            layout.home.parent.mkdir(parents=True, exist_ok=True)
            private_dirs(layout.home)
        try:
            self._open()
        except (sqlite3.DatabaseError, CorruptIndex) as exc:
            if not is_corruption(exc):
                raise
            self._reopen_fresh(str(exc))

    def _open(self) -> None:
        self._w = self._r = None
        touch_private(self.path)
        self._inode = os.stat(self.path).st_ino
        try:
            self._w = _connect(self.path, busy_ms=LOCK_NOTICE_MS)
            _retry_locked(self._init_schema)
            self._r = _connect(self.path)
        except BaseException:
            for conn in (self._w, self._r):
                if conn is not None:
                    conn.close()
            raise

    def _reopen_fresh(self, reason: str) -> None:
        """The index is bad: set it aside, start a fresh one and index every log into it (it
        is derived data), saying so in one line. Every command then works as before."""
        aside = set_aside(self.layout, self._inode)
        where = f"set aside as {aside.name}" if aside else "set aside by another process"
        log.warning("%s is not a usable index (%s): %s; rebuilding it from the logs",
                    self.path, reason, where)
        self._open()
        self.catch_up()

    def _init_schema(self) -> None:
        c = self._w
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA cache_size=-32768")
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            # Ours, by its own word: but a table dropped or reshaped by hand (or by a tool)
            # would be re-created empty below and the marks would lie about it.
            problem = schema_problem(c)
            if problem is not None:
                raise CorruptIndex(problem)
            have = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
            if _EXPECTED_INDEXES <= have:
                return  # nothing to write: a reader does not wait for the write lock
        if version != 0:
            # The index is derived data: an index of another version is dropped and rebuilt
            # from the logs by the catch-up that follows every open.
            log.warning("%s: index schema %s is not %s; rebuilding it from the logs",
                        self.path, version, SCHEMA_VERSION)
            c.execute("BEGIN IMMEDIATE")
            tables = [r[0] for r in c.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                " AND name NOT LIKE '%fts_%'")]
            for table in tables:
                c.execute(f'DROP TABLE IF EXISTS "{table}"')
            c.execute("COMMIT")
        c.executescript(SCHEMA)
        problem = schema_problem(c)  # tables of these names, of another shape, were there
        if problem is not None:
            raise CorruptIndex(problem)
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._w.close()
            self._r.close()

    # -- ingest -------------------------------------------------------------------------------

    def ingest(self, segments: Sequence[Segment]) -> None:
        """Index freshly written segments (called by the log writer's thread)."""
        with self._wlock:
            _retry_locked(self._ingest_segments, segments)

    def _ingest_segments(self, segments: Sequence[Segment]) -> None:
        c = self._w
        c.execute("BEGIN IMMEDIATE")
        try:
            batch = _Batch(self)
            for seg in segments:
                rel = self._rel(seg.path)
                file_id, indexed = self._log_row(rel, seg.run_id)
                if indexed >= seg.end:
                    continue
                batch.file_id = file_id
                if indexed < seg.start:
                    # Bytes before this batch were never indexed (an earlier ingest failed):
                    # take them from the file first, so the index has no holes.
                    for rec in read_log(seg.path, start=indexed):
                        if rec.end > seg.start:
                            break
                        batch.add(rec.event, rec.line, rec.offset)
                    indexed = seg.start
                offsets = seg.offsets
                ends = offsets[1:]
                ends.append(seg.end)
                events = seg.events
                skip = bisect_left(offsets, indexed)  # already indexed by a catch-up that ran first
                if skip:
                    events, offsets, ends = events[skip:], offsets[skip:], ends[skip:]
                batch.add_log(
                    events, offsets, ends,
                    lambda i, d=seg.data, b=seg.start, o=offsets, e=ends: d[o[i] - b : e[i] - b - 1],
                )
                c.execute("UPDATE logs SET indexed_bytes=? WHERE file_id=?", (seg.end, file_id))
            batch.flush()
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.layout.home))
        except ValueError:
            return str(path)

    def _log_row(self, rel: str, run_id: str) -> tuple[int, int]:
        row = self._w.execute(
            "SELECT file_id, indexed_bytes FROM logs WHERE path=?", (rel,)
        ).fetchone()
        if row is None:
            cur = self._w.execute(
                "INSERT INTO logs(path, run_id, indexed_bytes) VALUES (?, ?, 0)", (rel, run_id)
            )
            return cur.lastrowid, 0
        return row

    def name_id(self, name: str) -> int:
        """The interned id of ``name`` (write connection, inside a transaction)."""
        nid = self._names.get(name)
        if nid is None:
            c = self._w
            c.execute("INSERT OR IGNORE INTO names(name) VALUES (?)", (name,))
            nid = c.execute("SELECT id FROM names WHERE name=?", (name,)).fetchone()[0]
            self._names[name] = nid
        return nid

    # -- catch-up and rebuild -----------------------------------------------------------------

    def catch_up(self, bad_lines: list[BadLine] | None = None, batch: int = 20_000) -> int:
        """Index whatever complete lines the logs hold beyond the index's marks.

        Returns the number of events indexed. A reader: it never writes a log. A partial last
        line is either still being written by the run's owner or left by a crash; it is not
        indexed, and only the run's next owner (``ag resume``) cuts it off.
        """
        with self._wlock:
            marks = dict(self._w.execute("SELECT path, indexed_bytes FROM logs").fetchall())
        total = 0
        for path in self.layout.iter_logs():
            rel = self._rel(path)
            indexed = marks.get(rel, 0)
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                continue
            if size <= indexed:
                continue
            if complete_size(path) <= indexed:
                continue
            total += self._ingest_file(path, rel, indexed, bad_lines, batch)
        return total

    def catch_up_to(self, marks: Sequence[tuple[str, int]]) -> int:
        """Index the logs ``marks`` names (paths relative to the store) up to the byte each
        says: what the log writer has fsync'd, never past it. The index process's work (see
        ``indexproc``); a reader like ``catch_up``. Returns the number of events indexed."""
        ends: dict[str, int] = {}
        for rel, end in marks:  # a log named twice (two batches): its later end covers both
            ends[rel] = max(end, ends.get(rel, 0))
        with self._wlock:
            indexed = dict(self._w.execute("SELECT path, indexed_bytes FROM logs").fetchall())
        total = 0
        for rel, end in ends.items():
            start = indexed.get(rel, 0)
            if start < end:
                total += self._ingest_range(self.layout.home / rel, rel, start, end)
        return total

    def _ingest_range(self, path: Path, rel: str, start: int, stop: int) -> int:
        """Index the complete lines of ``path`` between ``start`` and ``stop``, ``CHUNK``
        bytes to a transaction. ``_ingest_file``'s work without an object per line: the index
        process does this for every event a fast run records (B3), so it must keep up with it."""
        count = 0
        size = CHUNK
        with open(path, "rb") as f:
            while start < stop:
                f.seek(start)
                data = f.read(min(stop - start, size))
                body = data.rfind(b"\n") + 1
                if not body:
                    if len(data) == size < stop - start:  # a line longer than a chunk: read more
                        size *= 2
                        continue
                    break  # no complete line (yet): nothing to index
                size = CHUNK
                events: list[Event] = []
                offsets: list[int] = []
                ends: list[int] = []
                lines: list[tuple[int, int]] = []
                decode = DECODER.decode
                pos = 0
                while pos < body:
                    nl = data.index(b"\n", pos)
                    line = data[pos:nl]
                    if line.strip():  # as ``read_log``: a blank line is no event and no error
                        try:
                            events.append(decode(line))
                        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                            log.warning("%s", BadLine(path, None, start + pos, str(exc)[:200], start + nl + 1))
                        else:
                            offsets.append(start + pos)
                            ends.append(start + nl + 1)
                            lines.append((pos, nl))
                    pos = nl + 1
                if not self._commit_lists(rel, path.stem, start, start + body, events, offsets, ends,
                                          lambda i: data[lines[i][0] : lines[i][1]]):
                    break  # someone else indexed these bytes first
                count += len(events)
                start += body
        return count

    def _commit_lists(self, rel, run_id, expect, new_mark, events, offsets, ends, line) -> bool:
        """Index ``events`` (as ``_Batch.add_log`` takes them) and move the mark from
        ``expect`` to ``new_mark`` in one transaction, unless someone else (the live writer,
        another process's catch-up) moved it first."""
        with self._wlock:
            return _retry_locked(self._commit_lists_locked, rel, run_id, expect, new_mark,
                                 events, offsets, ends, line)

    def _commit_lists_locked(self, rel, run_id, expect, new_mark, events, offsets, ends, line) -> bool:
        c = self._w
        c.execute("BEGIN IMMEDIATE")
        try:
            file_id, indexed = self._log_row(rel, run_id)
            if indexed != expect:
                c.execute("ROLLBACK")
                return False
            batch = _Batch(self)
            batch.file_id = file_id
            batch.add_log(events, offsets, ends, line)
            batch.flush()
            c.execute("UPDATE logs SET indexed_bytes=? WHERE file_id=?", (new_mark, file_id))
            c.execute("COMMIT")
            return True
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _ingest_file(
        self, path: Path, rel: str, start: int, bad_lines: list[BadLine] | None, batch: int
    ) -> int:
        run_id = path.stem
        count = 0
        mark = start
        read_to = start
        chunk: list[tuple[Event, bytes]] = []
        for item in read_log(path, start=start, bad_lines=bad_lines, include_bad=True):
            read_to = item.end
            if isinstance(item, BadLine):
                continue
            chunk.append((item.event, item.line, item.offset))
            if len(chunk) >= batch:
                if not self._commit_records(rel, run_id, mark, read_to, chunk):
                    return count
                count += len(chunk)
                mark = read_to
                chunk = []
        if read_to > mark and self._commit_records(rel, run_id, mark, read_to, chunk):
            count += len(chunk)
        return count

    def _commit_records(
        self, rel: str, run_id: str, expect: int, new_mark: int, records: list[tuple[Event, bytes, int]]
    ) -> bool:
        """Apply ``records`` and move the mark from ``expect`` to ``new_mark``, unless someone
        else (the live writer, another process's catch-up) moved it first."""
        return self._commit_lists(
            rel, run_id, expect, new_mark,
            [r[0] for r in records],
            [r[2] for r in records],
            [r[2] + len(r[1]) + 1 for r in records],
            lambda i: records[i][1],
        )

    def rebuild(self, bad_lines: list[BadLine] | None = None) -> int:
        """Forget everything and index every log from the start."""
        with self._wlock:
            c = self._w
            _retry_locked(c.execute, "BEGIN IMMEDIATE")
            for table in TABLES:
                if table == "memory_fts":  # contentless: emptied with its own command
                    c.execute("INSERT INTO memory_fts(memory_fts) VALUES ('delete-all')")
                else:
                    c.execute(f"DELETE FROM {table}")
            c.execute("COMMIT")
        return self.catch_up(bad_lines=bad_lines)

    # -- queries ------------------------------------------------------------------------------

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._rlock:
            return self._r.execute(sql, tuple(params)).fetchall()

    def memory_bodies(self, query: MemoryQuery | None = None, /, **filters: Any) -> list[bytes]:
        """Raw JSON bodies of the memory events ``query`` matches (or a ``MemoryQuery`` made
        of ``filters``), ordered by time."""
        q = MemoryQuery(**filters) if query is None else query
        where: list[str] = []
        params: list[Any] = []
        # Strings are interned; a name never seen has no id, so nothing can match it.
        ids = self._name_ids([*q.kinds, *q.tags, *q.entities, q.run_id, q.graph, q.node, q.topic])

        def one(name: str | None) -> int:
            return ids.get(name, -1) if name else 0

        if q.kinds:
            where.append(f"m.kind IN ({','.join('?' * len(q.kinds))})")
            params.extend(one(k) for k in q.kinds)
        for column, name in (("run", q.run_id), ("graph", q.graph), ("node", q.node), ("topic", q.topic)):
            if name:
                where.append(f"m.{column} = ?")
                params.append(one(name))
        for op, at in ((">=", q.since), ("<", q.until)):
            if at is not None:
                where.append(f"m.id {op} ?")
                params.append(time_key(at))
        # One posting list drives the query and streams newest first (every key is time
        # ordered); the other filters only check the rows it yields, so LIMIT stops early.
        tags = list(dict.fromkeys(q.tags))
        entities = list(dict.fromkeys(q.entities))
        order_sql = "DESC" if q.order == "desc" else "ASC"
        words = fts_query(q.text) if q.text else ""
        if words:
            source, key = "memory_fts f CROSS JOIN memory m ON m.id = f.rowid", "f.rowid"
            where.insert(0, "memory_fts MATCH ?")
            params.insert(0, words)
        elif tags:
            source, key = "memory_tags d CROSS JOIN memory m ON m.id = d.id", "d.id"
            where.insert(0, "d.tag = ?")
            params.insert(0, one(tags.pop(0)))
        elif entities:
            source, key = "memory_entities d CROSS JOIN memory m ON m.id = d.id", "d.id"
            where.insert(0, "d.entity = ?")
            params.insert(0, one(entities.pop(0)))
        else:
            source, key = "memory m", "m.id"
        for tag in tags:
            where.append("EXISTS (SELECT 1 FROM memory_tags t WHERE t.tag = ? AND t.id = m.id)")
            params.append(one(tag))
        for ent in entities:
            where.append(
                "EXISTS (SELECT 1 FROM memory_entities e WHERE e.entity = ? AND e.id = m.id)"
            )
            params.append(one(ent))
        sql = f"SELECT m.file, m.off, m.len FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {key} {order_sql}"
        if q.limit is not None:
            sql += " LIMIT ?"
            params.append(int(q.limit))
        return self._bodies(self._read(sql, params))

    def _bodies(self, locations: list[tuple[int, int, int]]) -> list[bytes]:
        """Read events' lines from their logs (positioned reads; logs only ever grow)."""
        out: list[bytes] = []
        fds: dict[int, int] = {}
        try:
            for file_id, off, length in locations:
                fd = fds.get(file_id)
                if fd is None:
                    path = self._log_path(file_id)
                    try:
                        fd = fds[file_id] = os.open(path, os.O_RDONLY)
                    except OSError:
                        log.warning("%s: log indexed but unreadable; `ag check` tells more", path)
                        fds[file_id] = -1
                        continue
                if fd < 0:
                    continue
                out.append(os.pread(fd, length, off))
        finally:
            for fd in fds.values():
                if fd >= 0:
                    os.close(fd)
        return out

    def _log_path(self, file_id: int) -> Path:
        rel = self._paths.get(file_id)
        if rel is None:
            row = self._read("SELECT path FROM logs WHERE file_id=?", (file_id,))
            rel = self._paths[file_id] = row[0][0] if row else ""
        return self.layout.home / rel

    def _name_ids(self, names: Iterable[str | None]) -> dict[str, int]:
        wanted = sorted({n for n in names if n})
        if not wanted:
            return {}
        rows = self._read(
            f"SELECT name, id FROM names WHERE name IN ({','.join('?' * len(wanted))})", wanted
        )
        return dict(rows)

    def memory(self, query: MemoryQuery | None = None, /, **filters: Any) -> list[MemoryRecorded]:
        """The memory events ``query`` (or ``MemoryQuery(**filters)``) matches, decoded."""
        return [MEMORY_DECODER.decode(b) for b in self.memory_bodies(query, **filters)]

    def memory_count(self) -> int:
        return self._read("SELECT count(*) FROM memory")[0][0]

    def _runs(self, where: str, params: list[Any], limit: int | None) -> list[RunInfo]:
        """Rows of the runs table as ``RunInfo`` (each column fills the field of its name, and
        NULL leaves the field's default), with the jobs each run submitted; newest first."""
        fields = _run_fields()
        sql = f"SELECT {', '.join(fields)}, (SELECT count(*) FROM jobs j WHERE j.run_id = runs.run_id) FROM runs"
        sql += where + " ORDER BY started DESC, run_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [RunInfo(**{k: v for k, v in zip(fields, row) if v is not None}, jobs=row[-1])
                for row in self._read(sql, params)]

    def runs(self, *, limit: int | None = None, run_ids: Sequence[str] | None = None) -> list[RunInfo]:
        if run_ids:
            return self._runs(f" WHERE run_id IN ({','.join('?' * len(run_ids))})", list(run_ids), limit)
        return self._runs("", [], limit)

    def runs_page(self, *, before: tuple[float, str] | None = None, limit: int = 200) -> list[RunInfo]:
        """Runs newest first, ``limit`` of them, strictly older than ``before`` = (started,
        run_id) of the last row of the previous page (keyset pagination: each page costs the
        same however deep it is, and a run added meanwhile does not shift the pages)."""
        if before is None:
            return self._runs("", [], limit)
        return self._runs(" WHERE started < ? OR (started = ? AND run_id < ?)",
                          [before[0], before[0], before[1]], limit)

    def runs_count(self) -> int:
        """How many runs the index knows."""
        return self._read("SELECT count(*) FROM runs")[0][0]

    def run(self, run_id: str) -> RunInfo | None:
        rows = self.runs(run_ids=[run_id])
        return rows[0] if rows else None

    def artifact_rows(
        self,
        *,
        run_id: str | None = None,
        graph: str | None = None,
        kind: str | None = None,
        ref: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[ArtifactWritten, bool]]:
        """(artifact_written event, pinned) pairs, newest first."""
        sql = "SELECT a.body, a.pinned FROM artifacts a"
        where: list[str] = []
        params: list[Any] = []
        if graph:
            sql += " JOIN runs r ON r.run_id = a.run_id"
            where.append("r.graph = ?")
            params.append(graph)
        if run_id:
            where.append("a.run_id = ?")
            params.append(run_id)
        if kind:
            where.append("a.kind = ?")
            params.append(kind)
        if ref:
            where.append("a.sha256 = ?")
            params.append(ref)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY a.ts DESC, a.id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [(ARTIFACT_DECODER.decode(b), bool(p)) for b, p in self._read(sql, params)]

    def artifacts(self, **kwargs: Any) -> list[ArtifactWritten]:
        return [a for a, _ in self.artifact_rows(**kwargs)]

    def open_asks(self, run_id: str | None = None) -> list[AskInfo]:
        """Asks still open, oldest first, as ``AskInfo`` (each column fills the field of its
        name; no ``runtime_id``: the index does not know who is live)."""
        fields = _ask_fields()
        sql = f"SELECT {', '.join(fields)} FROM asks WHERE status='open'"
        params: list[Any] = []
        if run_id:
            sql += " AND run_id=?"
            params.append(run_id)
        sql += " ORDER BY opened"
        out = []
        for row in self._read(sql, params):
            d = dict(zip(fields, row))
            d["options"] = msgspec.json.decode(d["options"])
            out.append(AskInfo(**d))
        return out

    def indexed_marks(self) -> dict[str, int]:
        return dict(self._read("SELECT path, indexed_bytes FROM logs"))

    def iter_counts(self) -> Iterator[tuple[str, int, int]]:
        """(run_id, memory events, artifacts) per run, for ``ag check``."""
        mem = dict(self._read(
            "SELECT n.name, count(*) FROM memory m JOIN names n ON n.id = m.run GROUP BY m.run"
        ))
        arts = dict(self._read("SELECT run_id, count(*) FROM artifacts GROUP BY run_id"))
        for run_id in sorted(set(mem) | set(arts)):
            yield run_id, mem.get(run_id, 0), arts.get(run_id, 0)


def _run_fields() -> list[str]:
    """The ``RunInfo`` fields the runs table has a column for (named alike), in its order."""
    have = _expected()["runs"]
    return [f for f in RunInfo.__struct_fields__ if f in have]


def _ask_fields() -> list[str]:
    """The ``AskInfo`` fields the asks table has a column for (``options`` as JSON text)."""
    have = _expected()["asks"]
    return [f for f in AskInfo.__struct_fields__ if f in have]


def _fts_text(ev: MemoryRecorded) -> str:
    """What full-text search sees of a memory event: its kind, topic, text, tags, entities
    and the words in its data (string values, at any depth; not keys, not numbers)."""
    parts = [ev.kind, ev.topic, ev.text, *ev.tags, *ev.entities, _words(ev.data)]
    return " ".join(p for p in parts if p)


def _words(data: Any) -> str:
    t = type(data)
    if t is str:
        return data
    if t is dict:
        if not data:
            return ""
        values = data.values()
    elif t is list or t is tuple:
        values = data
    else:
        return ""
    out = []
    for v in values:
        tv = type(v)
        if tv is str:
            out.append(v)
        elif tv is dict or tv is list or tv is tuple:
            w = _words(v)
            if w:
                out.append(w)
    return " ".join(out)


# Rows a multi-row INSERT carries (9 columns: 1,800 parameters, far below SQLite's limit).
ROWS_PER_INSERT = 200
_chain = chain.from_iterable
_ROW_SQL: dict[tuple[str, int], str] = {}


def _insert_rows(c: sqlite3.Connection, head: str, width: int, rows: list[tuple]) -> None:
    """Insert ``rows`` with one statement per ``ROWS_PER_INSERT`` rows, the rest with
    ``executemany``. Why: the sqlite3 module lets go of the GIL around every step, so
    ``executemany`` takes the GIL back once per row — each time waiting behind the run's thread
    (B3: a record loop beside the indexer); one statement for many rows takes it once."""
    n = len(rows)
    full = n - n % ROWS_PER_INSERT
    if full:
        sql = _ROW_SQL.get((head, width))
        if sql is None:
            one = "(" + ",".join("?" * width) + ")"
            sql = _ROW_SQL[(head, width)] = head + ",".join([one] * ROWS_PER_INSERT)
        execute = c.execute
        for i in range(0, full, ROWS_PER_INSERT):
            execute(sql, list(_chain(rows[i : i + ROWS_PER_INSERT])))
    if full < n:
        c.executemany(head + "(" + ",".join("?" * width) + ")", rows[full:])


class _Batch:
    """Rows of one ingest transaction, written with one ``executemany`` per table.

    Memory events are the bulk of any log, so their rows are gathered and inserted together
    (ids assigned here, so tags, metrics and full text can refer to them); the rarer run, ask
    and artifact facts are applied as they come, in log order.
    """

    def __init__(self, index: Index) -> None:
        self.index = index
        self.c = index._w
        # Keys above this cannot collide with anything already stored.
        self.floor = self.c.execute("SELECT max(id) FROM memory").fetchone()[0] or 0
        # Keys taken in this batch: the largest, and any taken out of order.
        self.last_key = 0
        self.used: set[int] = set()
        # Names are cached for one transaction only: the cache stays as small as a batch
        # (a runtime sees a new run id every run, for months), and an id interned by a
        # transaction that then rolled back is never used again.
        index._names.clear()
        self.names = index._names
        self.file_id = 0  # the log the events being added come from
        self.memory: list[tuple] = []
        self.fts: list[tuple] = []
        self.tags: list[tuple] = []
        self.entities: list[tuple] = []
        self.metrics: list[tuple] = []
        self.vectors: list[tuple] = []  # records that carry an embedding (see vectors.py)
        # run_id -> [last seq, last ts, number of events]
        self.runs: dict[str, list] = {}

    def add(self, ev: Event, body: bytes, offset: int) -> None:
        """One event of the log ``file_id``: ``body`` is its line, starting at ``offset``."""
        self.add_log([ev], [offset], [offset + len(body) + 1], lambda i: body)

    def add_log(
        self,
        events: Sequence[Event],
        offsets: Sequence[int],
        ends: Sequence[int],
        line: Callable[[int], bytes],
    ) -> None:
        """Events of the log ``file_id``, in log order: event ``i``'s line starts at
        ``offsets[i]`` and ends (newline included) at ``ends[i]``; ``line(i)`` gives its bytes,
        asked only for the rare facts that keep a copy (artifacts).

        The hot path of every ingest, written as one loop: a memory event costs a handful of
        dict lookups and one tuple, nothing per event is sliced or called that need not be.
        """
        names = self.names
        name = self.index.name_id
        runs = self.runs
        memory = self.memory.append
        fts = self.fts.append
        file_id = self.file_id
        last_key, floor = self.last_key, self.floor
        run_name = graph_name = node_name = None
        run_id = graph_id = node_id = 0
        stats = None
        for i, ev in enumerate(events):
            rid = ev.run_id
            if rid != run_name:
                run_name = rid
                run_id = names.get(rid) or name(rid)
                stats = runs.get(rid)
                if stats is None:
                    stats = runs[rid] = [0, 0.0, 0]
            seq = ev.seq
            if seq > stats[0]:  # not max(): a call per event
                stats[0] = seq
            stats[1] = ev.ts
            stats[2] += 1
            if type(ev) is not MemoryRecorded:
                t = type(ev)
                if t is not MessageSent and t is not Progress and t is not Log:
                    self._apply_fact(ev, line(i))
                continue
            key = int(ev.ts * 1_000_000)
            if key > last_key and key > floor:
                last_key = key  # the common case: later than anything seen
            else:
                self.last_key = last_key
                key = self._key(key)
                last_key = self.last_key
            g = ev.graph
            if g != graph_name:
                graph_name, graph_id = g, names.get(g) or name(g)
            nd = ev.node
            if nd != node_name:
                node_name, node_id = nd, names.get(nd) or name(nd)
            kind = ev.kind
            off = offsets[i]
            memory((
                key, run_id, names.get(kind) or name(kind), graph_id, node_id,
                name(ev.topic) if ev.topic else 0, file_id, off, ends[i] - off - 1,
            ))
            if ev.tags or ev.entities or ev.text or ev.topic or ev.metrics:
                fts((key, _fts_text(ev)))
                if ev.tags:
                    self.tags.extend((name(tag), key) for tag in ev.tags)
                if ev.entities:
                    self.entities.extend((name(e), key) for e in ev.entities)
                if ev.metrics:
                    self.metrics.extend((name(k), key, float(v)) for k, v in ev.metrics.items())
            else:
                words = _words(ev.data)
                if words:  # nothing to search in an event of numbers: no full-text row
                    fts((key, f"{kind} {words}"))
            if ev.embedding is not None:
                emb = ev.embedding
                self.vectors.append(vector_row(key, name(emb.model), name(kind), run_id, graph_id, emb.vector))
        self.last_key = last_key

    def _key(self, key: int) -> int:
        """A free key at or after ``key``, for an event not later than all seen so far."""
        used = self.used
        if key > self.floor:
            while key in used or key == self.last_key:
                key += 1
        else:  # older than something stored (a rebuild, another process): look before taking
            exists = self.c.execute
            while (key in used or key == self.last_key
                   or exists("SELECT 1 FROM memory WHERE id=?", (key,)).fetchone()):
                key += 1
        used.add(key)
        self.last_key = max(self.last_key, key)
        return key

    def flush(self) -> None:
        c = self.c
        if self.memory:
            _insert_rows(c, "INSERT INTO memory VALUES ", 9, self.memory)
            c.executemany("INSERT INTO memory_fts(rowid, body) VALUES (?, ?)", self.fts)
        if self.tags:
            c.executemany("INSERT OR IGNORE INTO memory_tags(tag, id) VALUES (?, ?)", self.tags)
        if self.entities:
            c.executemany(
                "INSERT OR IGNORE INTO memory_entities(entity, id) VALUES (?, ?)", self.entities
            )
        if self.metrics:
            c.executemany(
                "INSERT OR REPLACE INTO memory_metrics(name, id, value) VALUES (?, ?, ?)",
                self.metrics,
            )
        if self.vectors:
            insert_vectors(c, self.vectors)
        if self.runs:
            c.executemany(
                "UPDATE runs SET last_seq=max(last_seq, ?), last_ts=?, events=events+?"
                " WHERE run_id=?",
                [(seq, ts, n, run_id) for run_id, (seq, ts, n) in self.runs.items()],
            )

    def _apply_fact(self, ev: Event, body: bytes) -> None:
        c = self.c
        t = type(ev)
        if t is ArtifactWritten:
            c.execute(
                "INSERT INTO artifacts(sha256, ref, name, run_id, seq, node, tool, ts, size, mime,"
                " kind, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (ev.sha256, ev.ref, ev.name, ev.run_id, ev.seq, ev.node, ev.tool, ev.ts, ev.size,
                 ev.mime, ev.kind, body),
            )
        elif t is ArtifactPinned:
            c.execute("UPDATE artifacts SET pinned=? WHERE sha256=?", (int(ev.pinned), ev.sha256))
        elif t is JobSubmitted or t is JobStateChanged:
            _apply_job(c, ev)
        elif t is RunStarted:
            c.execute(
                "INSERT INTO runs(run_id, graph, status, started, pid, host, entrypoint,"
                " attempt_of) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET"
                " status='running', finished=NULL, error=NULL, pid=excluded.pid,"
                " host=excluded.host",
                (ev.run_id, ev.graph, "running", ev.ts, ev.pid, ev.host, ev.entrypoint,
                 ev.attempt_of),
            )
        elif t is RunResumed:
            c.execute(
                "UPDATE runs SET status='running', finished=NULL, error=NULL, pid=?, host=?"
                " WHERE run_id=?",
                (ev.pid, ev.host, ev.run_id),
            )
        elif t is RunFinished:
            err = str(ev.error) if ev.error else None
            c.execute(
                "UPDATE runs SET status=?, finished=?, error=?, pending_asks=0 WHERE run_id=?",
                (ev.status, ev.ts, err, ev.run_id),
            )
            c.execute(
                "UPDATE asks SET status='closed', closed=? WHERE run_id=? AND status='open'",
                (ev.ts, ev.run_id),
            )
        elif t is AskOpened:
            # An ask opened again while open (the same question, asked again by a re-executed
            # node) is still one pending ask: the count follows track_asks.
            was_open = c.execute(
                "SELECT 1 FROM asks WHERE ask_id=? AND status='open'", (ev.ask_id,)
            ).fetchone()
            c.execute(
                "INSERT OR REPLACE INTO asks(ask_id, run_id, node, kind, prompt, options, opened,"
                " timeout_s, status) VALUES (?,?,?,?,?,?,?,?, 'open')",
                (ev.ask_id, ev.run_id, ev.node, ev.ask_kind, ev.prompt,
                 _JSON.encode(ev.options).decode(), ev.ts, ev.timeout_s),
            )
            if was_open is None:
                c.execute(
                    "UPDATE runs SET pending_asks=pending_asks+1 WHERE run_id=?", (ev.run_id,)
                )
        elif t is AskAnswered or t is AskExpired:
            answered = t is AskAnswered
            cur = c.execute(
                "UPDATE asks SET status=?, answer=?, answered_by=?, closed=?"
                " WHERE ask_id=? AND status='open'",
                ("answered" if answered else ev.reason, ev.answer if answered else None,
                 ev.by if answered else None, ev.ts, ev.ask_id),
            )
            if cur.rowcount:
                c.execute(
                    "UPDATE runs SET pending_asks=max(0, pending_asks-1) WHERE run_id=?",
                    (ev.run_id,),
                )


def _apply_job(c: sqlite3.Connection, ev: JobSubmitted | JobStateChanged) -> None:
    if type(ev) is JobSubmitted:
        c.execute(
            "INSERT INTO jobs(job_id, run_id, node, name, runner, key, argv, submitted)"
            " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(job_id) DO NOTHING",
            (ev.job_id, ev.run_id, ev.node, ev.name, ev.runner, ev.key,
             _JSON.encode(ev.argv).decode(), ev.ts),
        )
        return
    # A reattached job is first seen by its state: its row starts there.
    c.execute(
        "INSERT INTO jobs(job_id, run_id, node, submitted) VALUES (?,?,?,?)"
        " ON CONFLICT(job_id) DO NOTHING",
        (ev.job_id, ev.run_id, ev.node, ev.ts),
    )
    c.execute(
        "UPDATE jobs SET state=?, started=coalesce(?, started), ended=?, exit_code=?, error=?,"
        " pid=CASE WHEN ?>0 THEN ? ELSE pid END WHERE job_id=?",
        (ev.state, ev.started, ev.ended, ev.exit_code, ev.error, ev.pid, ev.pid, ev.job_id),
    )


JOB_COLUMNS = ("job_id", "run_id", "node", "name", "runner", "key", "argv", "state", "submitted",
               "started", "ended", "exit_code", "error", "pid")


def job_rows(index: Index, *, run_id: str | None = None, limit: int | None = None) -> list[dict]:
    """Jobs as the runs recorded them, newest first (``ag jobs``, the dashboard)."""
    sql = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"
    params: list[Any] = []
    if run_id:
        sql += " WHERE run_id=?"
        params.append(run_id)
    sql += " ORDER BY submitted DESC, job_id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = [dict(zip(JOB_COLUMNS, r)) for r in index._read(sql, params)]
    for r in rows:
        r["argv"] = msgspec.json.decode(r["argv"])
    return rows
