"""kv(): a small persistent key-value store (SQLite), per namespace, with expiry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import trio


class KV:
    def __init__(self, runtime: Any, namespace: str = "default") -> None:
        self._store = runtime.kv
        self.namespace = namespace

    async def _run(self, fn, *args):
        return await trio.to_thread.run_sync(fn, self.namespace, *args)

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._run(self._store.get, key, default)

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        await self._run(self._store.set, key, value, ttl_s)

    async def delete(self, key: str) -> bool:
        return await self._run(self._store.delete, key)

    async def mget(self, keys: Iterable[str], default: Any = None) -> list[Any]:
        return await self._run(self._store.mget, list(keys), default)

    async def mset(self, items: Mapping[str, Any], ttl_s: float | None = None) -> None:
        await self._run(self._store.mset, dict(items), ttl_s)

    async def expire(self, key: str, ttl_s: float) -> bool:
        return await self._run(self._store.expire, key, ttl_s)

    async def purge_expired(self) -> int:
        return await self._run(self._store.purge_expired)

    async def list_append_unique(self, key: str, items: Iterable[Any], ttl_s: float | None = None) -> list[Any]:
        return await self._run(self._store.list_append_unique, key, list(items), ttl_s)

    async def list_pop_all(self, key: str) -> list[Any]:
        return await self._run(self._store.list_pop_all, key)
