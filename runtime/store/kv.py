"""A small persistent key-value store on SQLite, with namespaces and expiry.

Values are JSON (msgspec), never pickle. Expired keys read as absent at once and are deleted by
``purge_expired``. The clock is injectable so expiry can be tested without waiting.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from ..errors import StoreError
from .index import _retry_locked, is_corruption
from .layout import StoreLayout, private_dirs, touch_private

_MISSING = object()
_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder()


class KVStore:
    def __init__(self, layout: StoreLayout, clock: Callable[[], float] = time.time) -> None:
        if not layout.home.is_dir():
            layout.home.parent.mkdir(parents=True, exist_ok=True)
            private_dirs(layout.home)
        touch_private(layout.kv_path)
        self.clock = clock
        self._lock = threading.Lock()
        self._c = sqlite3.connect(
            layout.kv_path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        try:
            _retry_locked(self._init, what="the kv store's lock")
        except sqlite3.DatabaseError as exc:
            self._c.close()
            if not is_corruption(exc):
                raise
            # Unlike the index, the kv store is nobody's copy: it is left as it is.
            raise StoreError(
                f"{layout.kv_path} is not a usable kv store ({exc}); it is not derived data, so it "
                "is left untouched: move it away to start with an empty one") from None

    def _init(self) -> None:
        self._c.execute("PRAGMA journal_mode=WAL")
        self._c.execute("PRAGMA synchronous=NORMAL")
        self._c.execute(
            "CREATE TABLE IF NOT EXISTS kv(ns TEXT NOT NULL, key TEXT NOT NULL,"
            " value BLOB NOT NULL, expires REAL, PRIMARY KEY(ns, key)) WITHOUT ROWID"
        )
        self._c.execute("CREATE INDEX IF NOT EXISTS kv_expires ON kv(expires)")

    def close(self) -> None:
        with self._lock:
            self._c.close()

    def _q(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return _retry_locked(lambda: self._c.execute(sql, tuple(params)).fetchall(), what="the kv store's lock")

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def run():
            self._c.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._c)
                self._c.execute("COMMIT")
                return out
            except BaseException:
                self._c.execute("ROLLBACK")
                raise

        with self._lock:
            return _retry_locked(run, what="the kv store's lock")

    def _expiry(self, ttl_s: float | None) -> float | None:
        if ttl_s is None:
            return None
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        return self.clock() + ttl_s

    def get(self, ns: str, key: str, default: Any = None) -> Any:
        rows = self._q(
            "SELECT value FROM kv WHERE ns=? AND key=? AND (expires IS NULL OR expires > ?)",
            (ns, key, self.clock()),
        )
        return _DEC.decode(rows[0][0]) if rows else default

    def set(self, ns: str, key: str, value: Any, ttl_s: float | None = None) -> None:
        self._q(
            "INSERT OR REPLACE INTO kv(ns, key, value, expires) VALUES (?,?,?,?)",
            (ns, key, _ENC.encode(value), self._expiry(ttl_s)),
        )

    def delete(self, ns: str, key: str) -> bool:
        def run(c):
            return c.execute("DELETE FROM kv WHERE ns=? AND key=?", (ns, key)).rowcount > 0

        return self._tx(run)

    def mget(self, ns: str, keys: Iterable[str], default: Any = None) -> list[Any]:
        keys = list(keys)
        if not keys:
            return []
        rows = dict(
            self._q(
                f"SELECT key, value FROM kv WHERE ns=? AND key IN ({','.join('?' * len(keys))})"
                " AND (expires IS NULL OR expires > ?)",
                (ns, *keys, self.clock()),
            )
        )
        return [_DEC.decode(rows[k]) if k in rows else default for k in keys]

    def mset(self, ns: str, items: Mapping[str, Any], ttl_s: float | None = None) -> None:
        exp = self._expiry(ttl_s)
        rows = [(ns, k, _ENC.encode(v), exp) for k, v in items.items()]

        def run(c):
            c.executemany("INSERT OR REPLACE INTO kv(ns, key, value, expires) VALUES (?,?,?,?)", rows)

        self._tx(run)

    def expire(self, ns: str, key: str, ttl_s: float) -> bool:
        exp = self._expiry(ttl_s)

        def run(c):
            return c.execute(
                "UPDATE kv SET expires=? WHERE ns=? AND key=? AND (expires IS NULL OR expires > ?)",
                (exp, ns, key, self.clock()),
            ).rowcount > 0

        return self._tx(run)

    def purge_expired(self, ns: str | None = None) -> int:
        def run(c):
            if ns is None:
                return c.execute(
                    "DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (self.clock(),)
                ).rowcount
            return c.execute(
                "DELETE FROM kv WHERE ns=? AND expires IS NOT NULL AND expires <= ?",
                (ns, self.clock()),
            ).rowcount

        return self._tx(run)

    def list_append_unique(self, ns: str, key: str, items: Iterable[Any], ttl_s: float | None = None) -> list[Any]:
        """Append the items not already in the list stored at ``key``; return the new list."""
        new_items = list(items)

        def run(c):
            row = c.execute(
                "SELECT value, expires FROM kv WHERE ns=? AND key=? AND (expires IS NULL OR expires > ?)",
                (ns, key, self.clock()),
            ).fetchone()
            current = _DEC.decode(row[0]) if row else []
            if not isinstance(current, list):
                raise TypeError(f"kv key {key!r} holds a {type(current).__name__}, not a list")
            for item in new_items:
                if item not in current:
                    current.append(item)
            exp = self._expiry(ttl_s) if ttl_s is not None else (row[1] if row else None)
            c.execute(
                "INSERT OR REPLACE INTO kv(ns, key, value, expires) VALUES (?,?,?,?)",
                (ns, key, _ENC.encode(current), exp),
            )
            return current

        return self._tx(run)

    def list_pop_all(self, ns: str, key: str) -> list[Any]:
        """Take the whole list stored at ``key`` and delete it, atomically."""

        def run(c):
            row = c.execute(
                "SELECT value FROM kv WHERE ns=? AND key=? AND (expires IS NULL OR expires > ?)",
                (ns, key, self.clock()),
            ).fetchone()
            c.execute("DELETE FROM kv WHERE ns=? AND key=?", (ns, key))
            if row is None:
                return []
            value = _DEC.decode(row[0])
            if not isinstance(value, list):
                raise TypeError(f"kv key {key!r} holds a {type(value).__name__}, not a list")
            return value

        return self._tx(run)
