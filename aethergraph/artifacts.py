"""artifacts(): content-addressed files with provenance.

``write_text("spec.json", content=...)`` stores the bytes once under their sha256 and returns a
stable ref (``ag://artifact/<sha256>``); the ``artifact_written`` event in the run's log records
what it is and where it came from (run, node, tool, time, name, mime, size). Writing never moves
or changes a user's file: ``save(path)`` copies.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from runtime import events as ev
from runtime.errors import StoreError
from runtime.store.artifacts import check_name, ref_for, sha_from_ref

if TYPE_CHECKING:
    from runtime.engine import NodeHandle

from .memory import _clean_metrics


class Artifacts:
    def __init__(self, node: NodeHandle) -> None:
        self._node = node

    @property
    def _blobs(self):
        return self._node.runtime.blobs

    async def _record(
        self, sha: str, size: int, name: str, *, mime: str, kind: str,
        labels: Mapping[str, Any] | None, metrics: Mapping[str, float] | None,
    ) -> str:
        node = self._node
        ref = ref_for(sha)
        _, ticket = node.emit(
            ev.ArtifactWritten,
            ref=ref, sha256=sha, name=name, size=size, mime=mime, kind=kind,
            tool=node.spec.name if node.spec.kind == "tool" else "",
            labels=dict(labels or {}), metrics=_clean_metrics(metrics),
        )
        if node.runtime.writer.durability == "strict":
            await node.runtime.writer.wait_durable(ticket)
        return ref

    async def write_bytes(
        self, name: str, content: bytes, *, mime: str | None = None, kind: str = "",
        labels: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
    ) -> str:
        check_name(name)
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(f"write_bytes takes bytes, got {type(content).__name__}")
        data = bytes(content)
        sha = await trio.to_thread.run_sync(self._blobs.put_bytes, data)
        mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return await self._record(sha, len(data), name, mime=mime, kind=kind, labels=labels, metrics=metrics)

    async def write_text(
        self, name: str, content: str = "", *, mime: str | None = None, kind: str = "text",
        labels: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
    ) -> str:
        """Store ``content`` (UTF-8) under ``name``; returns its ref."""
        if not isinstance(content, str):
            raise TypeError(f"write_text takes str content, got {type(content).__name__}")
        mime = mime or mimetypes.guess_type(name)[0] or "text/plain"
        return await self.write_bytes(name, content.encode(), mime=mime, kind=kind, labels=labels, metrics=metrics)

    save_text = write_text

    async def save_json(
        self, name: str, obj: Any, *, kind: str = "json",
        labels: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
    ) -> str:
        data = msgspec.json.format(msgspec.json.encode(obj), indent=2)
        return await self.write_bytes(name, data, mime="application/json", kind=kind, labels=labels, metrics=metrics)

    async def save(
        self, path: str | Path, *, name: str | None = None, kind: str = "file",
        labels: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
    ) -> str:
        """Copy the file at ``path`` into the store (the original is left untouched)."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"{path} is not a file")
        name = check_name(name or path.name)
        sha, size = await trio.to_thread.run_sync(self._blobs.put_file, path)
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return await self._record(sha, size, name, mime=mime, kind=kind, labels=labels, metrics=metrics)

    # -- reading ------------------------------------------------------------------------------

    async def load_bytes(self, ref: str) -> bytes:
        return await trio.to_thread.run_sync(self._blobs.read_bytes, sha_from_ref(ref))

    async def read_text(self, ref: str) -> str:
        return (await self.load_bytes(ref)).decode()

    load_text = read_text

    async def load_json(self, ref: str) -> Any:
        return msgspec.json.decode(await self.load_bytes(ref))

    def path(self, ref: str) -> Path:
        """Where the blob lives (read-only: the store shares it between artifacts)."""
        sha = sha_from_ref(ref)
        p = self._blobs.path_for(sha)
        if not p.is_file():
            raise StoreError(f"artifact {ref} is not in this store")
        return p

    async def list(self, scope: str = "run", limit: int | None = None) -> list[ev.ArtifactWritten]:
        """Artifacts written in this run (``"run"``), by this graph (``"graph"``) or ever (``"all"``)."""
        rt = self._node.runtime
        if scope == "run":
            filters = {"run_id": self._node.run.run_id}
        elif scope == "graph":
            filters = {"graph": self._node.run.graph}
        elif scope == "all":
            filters = {}
        else:
            raise ValueError(f"scope must be 'run', 'graph' or 'all', got {scope!r}")
        await rt.writer.wait_durable()
        return await trio.to_thread.run_sync(lambda: rt.index.artifacts(limit=limit, **filters))
