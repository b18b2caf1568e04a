"""artifacts(): content-addressed files with provenance.

``write_text("spec.json", content=...)`` stores the bytes once under their sha256 and returns a
stable ref (``ag://artifact/<sha256>``); the ``artifact_written`` event in the run's log records
what it is and where it came from (run, node, tool, time, name, mime, size). Writing never moves
or changes a user's file: ``save(path)`` copies.
"""

from __future__ import annotations

import mimetypes
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from aethergraph.runtime import events as ev
from aethergraph.runtime.errors import StoreError
from aethergraph.runtime.ids import derived_id
from aethergraph.runtime.journal import content_hash
from aethergraph.runtime.store.artifacts import check_name, ref_for, sha_from_ref

if TYPE_CHECKING:
    from aethergraph.runtime.engine import NodeHandle

from .memory import _clean_metrics, scope_filter


# -- images -----------------------------------------------------------------------------------

_IMAGE_HEAD = 64 * 1024  # enough of a file to find a JPEG's frame header in practice


def image_info(head: bytes) -> tuple[str, int | None, int | None] | None:
    """(mime, width, height) of an image from its first bytes (PNG, JPEG, GIF, WebP, BMP);
    None when the bytes are not one of those. Width and height are None where not found."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return "image/png", w, h
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        w, h = struct.unpack("<HH", head[6:10])
        return "image/gif", w, h
    if head.startswith(b"\xff\xd8\xff"):
        i = 2
        while i + 9 <= len(head):
            if head[i] != 0xFF:
                i += 1
                continue
            marker = head[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            (seglen,) = struct.unpack(">H", head[i + 2:i + 4])
            # Start-of-frame markers carry the size (C4 DHT, C8, CC DAC are not frames).
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", head[i + 5:i + 9])
                return "image/jpeg", w, h
            i += 2 + seglen
        return "image/jpeg", None, None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        if head[12:16] == b"VP8X" and len(head) >= 30:
            w = 1 + int.from_bytes(head[24:27], "little")
            h = 1 + int.from_bytes(head[27:30], "little")
            return "image/webp", w, h
        return "image/webp", None, None
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return "image/bmp", w, abs(h)
    return None


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
        # What is written (name and content), not when: see ``aethergraph.runtime.journal``.
        event_id = derived_id("art", node.run.run_id, node.identity(f"artifact|{content_hash(name)}|{sha}"))
        if node.run.journal is not None and node.run.replayed("artifact", event_id) is not None:
            return ref  # written before a crash; the blob is content-addressed, so it is the same
        _, ticket = node.emit(
            ev.ArtifactWritten,
            event_id=event_id,
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

    def open(self, ref: str):
        """The artifact's bytes as a read-only binary file object (for large artifacts)."""
        return open(self._blobs.open_blob(sha_from_ref(ref)), "rb")  # noqa: SIM115 - the caller closes it

    def path(self, ref: str) -> Path:
        """Where the blob lives (read-only: the store shares it between artifacts); only a
        regular file inside the store, never a symlink planted there."""
        sha = sha_from_ref(ref)
        os.close(self._blobs.open_blob(sha))
        return self._blobs.path_for(sha)

    async def _rows(self, **filters: Any) -> list[tuple[ev.ArtifactWritten, bool]]:
        rt = self._node.runtime
        await rt.writer.wait_durable()  # see what this process wrote a moment ago
        return await trio.to_thread.run_sync(lambda: rt.index.artifact_rows(**filters))

    async def list(self, scope: str = "run", limit: int | None = None) -> list[ev.ArtifactWritten]:
        """Artifacts written in this run (``"run"``), by this graph (``"graph"``) or ever (``"all"``)."""
        return [a for a, _ in await self._rows(limit=limit, **scope_filter(self._node, scope))]

    async def search(
        self,
        *,
        kind: str | None = None,
        labels: Mapping[str, Any] | None = None,
        metric: str | None = None,
        mode: str = "max",
        scope: str = "graph",
        limit: int | None = 50,
    ) -> list[ev.ArtifactWritten]:
        """Artifacts of ``kind`` whose labels include ``labels``; with ``metric``, only those
        that recorded it, best first (``mode="max"`` or ``"min"``), else newest first."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        found = [a for a, _ in await self._rows(kind=kind, **scope_filter(self._node, scope))]
        if labels:
            want = dict(labels)
            found = [a for a in found if all(a.labels.get(k) == v for k, v in want.items())]
        if metric is not None:
            found = [a for a in found if metric in a.metrics]
            found.sort(key=lambda a: a.metrics[metric], reverse=(mode == "max"))
        return found if limit is None else found[:limit]

    async def best(
        self,
        *,
        metric: str,
        mode: str = "max",
        kind: str | None = None,
        labels: Mapping[str, Any] | None = None,
        scope: str = "graph",
    ) -> ev.ArtifactWritten | None:
        """The artifact with the highest (``mode="max"``) or lowest ``metric``, or None."""
        found = await self.search(kind=kind, labels=labels, metric=metric, mode=mode, scope=scope, limit=1)
        return found[0] if found else None

    async def pin(self, ref: str, pinned: bool = True) -> None:
        """Mark an artifact as one to keep; recorded as an event in this run."""
        sha = sha_from_ref(ref)
        if not self._blobs.has(sha):
            raise StoreError(f"artifact {ref} is not in this store")
        _, ticket = self._node.emit(ev.ArtifactPinned, ref=ref_for(sha), sha256=sha, pinned=pinned)
        if self._node.runtime.writer.durability == "strict":
            await self._node.runtime.writer.wait_durable(ticket)
        else:
            await trio.lowlevel.checkpoint()

    async def is_pinned(self, ref: str) -> bool:
        rows = await self._rows(ref=sha_from_ref(ref), limit=1)
        return bool(rows and rows[0][1])
