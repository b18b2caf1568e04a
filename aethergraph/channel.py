"""The channel a node uses to talk to people.

Sending records a ``message_sent`` event; whatever channels are attached show it (the console
prints it). Asking goes through the runtime's ask broker: the first valid answer from any
attached channel wins, and the answer is recorded with who gave it.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from aethergraph.runtime import events as ev
from aethergraph.runtime.asks import DEFAULT_MAX_FILE_BYTES, _size_text, decode_files
from aethergraph.runtime.ids import derived_id
from aethergraph.runtime.journal import content_hash
from aethergraph.runtime.store.artifacts import REF_PREFIX, sha_from_ref

from .artifacts import _IMAGE_HEAD, Artifacts, image_info

if TYPE_CHECKING:
    from aethergraph.runtime.engine import NodeHandle

DEFAULT_ASK_TIMEOUT_S = 3600.0


class Channel:
    def __init__(self, node: NodeHandle, key: str = "console") -> None:
        self._node = node
        self.key = key

    # -- sending ------------------------------------------------------------------------------

    def _send(self, text: str, kind: str = "text", data: Any = None) -> None:
        node = self._node
        # What is said, not when: concurrent senders in one node keep their ids on resume.
        what = content_hash([self.key, kind, text, data])
        message_id = derived_id("msg", node.run_id, node.identity(f"message|{what}"))
        if node.run.journal is not None and node.run.replayed("message", message_id):
            return  # sent (and seen) before a crash; a resumed run does not say it twice
        node.emit(ev.MessageSent, text=text, channel=self.key, kind=kind, data=data,
                  message_id=message_id)

    async def send_text(self, text: str) -> None:
        self._send(str(text))
        await _checkpoint()

    async def send_rich(self, text: str = "", *, rich: Any = None) -> None:
        self._send(str(text), "rich", rich)
        await _checkpoint()

    async def send_buttons(self, text: str, buttons: Sequence[str]) -> None:
        shown = f"{text}  [" + " / ".join(map(str, buttons)) + "]"
        self._send(shown, "buttons", list(map(str, buttons)))
        await _checkpoint()

    async def send_file(
        self,
        file: Any = None,
        *,
        file_bytes: bytes | None = None,
        filename: str | None = None,
        title: str | None = None,
        text: str = "",
    ) -> str:
        """Send a file: an artifact ref, a path (copied into the store, never moved) or bytes
        (``file_bytes=``, or as ``file``; named ``filename``). The message says its name,
        size and ref (``ag artifacts export REF`` gets it back); returns the ref."""
        ref, name, size, mime = await self._as_artifact(file, file_bytes, filename, kind="file")
        shown = text or title or f"file: {name} ({_size(size)}, {mime}) {ref}"
        self._send(shown, "file", {"ref": ref, "name": name, "size": size, "mime": mime})
        await _checkpoint()
        return ref

    async def send_image(
        self,
        image: Any = None,
        *,
        caption: str = "",
        image_bytes: bytes | None = None,
        filename: str | None = None,
    ) -> str:
        """Send an image: an artifact ref, a path or bytes (PNG, JPEG, GIF, WebP or BMP; other
        bytes are refused). Stored as an artifact (kind ``"image"``); the message carries its
        ref, type, byte size and pixel size, which the dashboard shows. Returns the ref."""
        ref, name, size, mime = await self._as_artifact(image, image_bytes, filename, kind="image", image=True)
        head = await self._head(ref)
        info = image_info(head)
        if info is None:
            raise ValueError(f"{name} is not an image this channel can show (PNG, JPEG, GIF, WebP or BMP)")
        mime, width, height = info
        dims = f"{width}×{height}, " if width and height else ""
        shown = caption or f"image: {name}"
        self._send(shown, "image", {"ref": ref, "name": name, "size": size, "mime": mime,
                                    "width": width, "height": height, "caption": caption,
                                    "summary": f"{name} ({dims}{_size(size)}, {mime})"})
        await _checkpoint()
        return ref

    async def _head(self, ref: str) -> bytes:
        def read() -> bytes:
            fd = self._node.runtime.blobs.open_blob(sha_from_ref(ref))
            try:
                return os.read(fd, _IMAGE_HEAD)
            finally:
                os.close(fd)

        return await trio.to_thread.run_sync(read)

    async def _as_artifact(
        self, what: Any, data: bytes | None, filename: str | None, *, kind: str, image: bool = False,
    ) -> tuple[str, str, int, str]:
        """(ref, name, size, mime) of what is sent, stored as an artifact of this node unless
        it already is one (a ref)."""
        arts = Artifacts(self._node)
        if isinstance(what, (bytes, bytearray, memoryview)):
            if data is not None:
                raise TypeError("give the bytes once: as the first argument or as file_bytes=")
            data, what = bytes(what), None
        if data is not None:
            if what is not None:
                raise TypeError("give either a ref/path or bytes, not both")
            info = image_info(bytes(data[:_HEAD])) if image else None
            if image and info is None:
                raise ValueError("these bytes are not an image this channel can show (PNG, JPEG, GIF, WebP or BMP)")
            mime = info[0] if info else (mimetypes.guess_type(filename or "")[0] or "application/octet-stream")
            name = filename or ("image" + (mimetypes.guess_extension(mime) or "") if image else "file.bin")
            ref = await arts.write_bytes(name, bytes(data), mime=mime, kind=kind)
            return ref, name, len(data), mime
        if isinstance(what, str) and what.startswith(REF_PREFIX):
            sha = sha_from_ref(what)
            blobs = self._node.runtime.blobs
            if not blobs.has(sha):
                raise FileNotFoundError(f"artifact {what} is not in this store")
            rows = await arts._rows(ref=sha, limit=1) if filename is None else []
            known = rows[0][0] if rows else None
            name = filename or (known.name if known else sha[:12])
            size = await trio.to_thread.run_sync(lambda: os.stat(blobs.path_for(sha)).st_size)
            mime = (known.mime if known else "") or mimetypes.guess_type(name)[0] or "application/octet-stream"
            return what, name, size, mime
        if isinstance(what, (str, Path)):
            path = Path(what)
            if not path.is_file():
                raise FileNotFoundError(f"no file at {str(path)!r} (give a path, an artifact ref or bytes)")
            name = filename or path.name
            ref = await arts.save(path, name=name, kind=kind)
            size = path.stat().st_size
            return ref, name, size, mimetypes.guess_type(name)[0] or "application/octet-stream"
        raise TypeError(f"send a ref, a path or bytes, not {type(what).__name__}")

    # -- asking -------------------------------------------------------------------------------

    async def ask_text(
        self, prompt: str, *, timeout_s: float | None = DEFAULT_ASK_TIMEOUT_S, default: str | None = None
    ) -> str:
        """Ask for free text. Raises ``AskTimeout`` after ``timeout_s`` unless ``default``."""
        return await self._node.runtime.asks.ask(
            self._node, "text", str(prompt), None, timeout_s, default=default
        )

    async def ask_choice(
        self,
        prompt: str,
        options: Sequence[str],
        *,
        timeout_s: float | None = DEFAULT_ASK_TIMEOUT_S,
        default: str | None = None,
    ) -> str:
        """Ask for one of ``options``; returns the option exactly as given."""
        return await self._node.runtime.asks.ask(
            self._node, "choice", str(prompt), list(options), timeout_s, default=default
        )

    async def ask_approval(
        self,
        prompt: str,
        options: Sequence[str] = ("Approve", "Reject"),
        *,
        timeout_s: float | None = DEFAULT_ASK_TIMEOUT_S,
        default: str | None = None,
    ) -> dict[str, Any]:
        """Ask to approve. Returns ``{"approved": bool, "choice": str}``.

        ``approved`` is True exactly when the first option was chosen: list the approving
        option first (``("Deploy", "Hold")``).
        """
        choice = await self._node.runtime.asks.ask(
            self._node, "approval", str(prompt), list(options), timeout_s, default=default
        )
        return {"approved": choice == list(options)[0], "choice": choice}

    # -- streaming ----------------------------------------------------------------------------

    def stream(self, name: str = "") -> Stream:
        """``async with channel.stream() as s: await s.delta("tok")`` — text said piece by piece
        (an agent's tokens, progress text). Pieces are shown as they come; the log keeps them
        coalesced (see ``Stream``) and the whole text as one message when the stream ends.

        Concurrent streams of one node should each get a ``name``: a stream's identity (what a
        resume matches it by) is its node's key + name + its occurrence among same-named ones.
        """
        return Stream(self, str(name))

    async def ask_files(
        self,
        prompt: str,
        *,
        accept: Sequence[str] | None = None,
        multiple: bool = False,
        max_bytes: int | None = None,
        timeout_s: float | None = DEFAULT_ASK_TIMEOUT_S,
    ) -> Any:
        """Ask for a file (``multiple=True``: one or more). Answered with a path at the console,
        ``ag answer ASK --file PATH`` (repeatable) or the dashboard's file picker; each file is
        checked (exists, a regular file, readable, within ``max_bytes`` — 100 MB unless given —
        and matching ``accept``: ``["*.csv", ".png", "image/*"]``), copied into the store and
        recorded as an artifact of this node (kind ``"upload"``). A refused path is said to
        whoever gave it and the ask stays open.

        Returns the artifact ref (``ag://artifact/<sha256>``), or a list of refs with
        ``multiple=True``; read them with ``context.artifacts().load_bytes(ref)``.
        """
        if isinstance(accept, str):
            accept = [accept]
        if max_bytes is not None and not max_bytes > 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes!r}")
        spec = ev.FileAskSpec(accept=[str(a) for a in (accept or [])], multiple=bool(multiple),
                              max_bytes=int(max_bytes or DEFAULT_MAX_FILE_BYTES))
        answer = await self._node.runtime.asks.ask(
            self._node, "files", str(prompt), spec.accept, timeout_s, files=spec
        )
        arts = Artifacts(self._node)
        refs = [
            # Recorded by the node (an artifact of its own, with its provenance); on resume the
            # same files get the same artifact ids and are not recorded twice.
            await arts._record(f.sha256, f.size, f.name, mime=f.mime, kind="upload", labels=None, metrics=None)
            for f in decode_files(answer)
        ]
        return refs if multiple else refs[0]

    # -- progress -----------------------------------------------------------------------------

    def progress(self, title: str = "", total: float | None = None) -> ProgressReporter:
        """``async with channel.progress(title="Fetching", total=10) as p: await p.update(inc=1)``"""
        return ProgressReporter(self._node, title, total)


class Stream:
    """One streamed text. ``delta`` buffers a piece; the buffer becomes one ``stream_delta``
    event when it holds ``FLUSH_CHARS`` characters or has waited ``FLUSH_S`` (so 10,000 tiny
    pieces are a handful of events, and a slow producer's piece still shows within 50 ms);
    ``end`` flushes and says the whole text as one ``message_sent`` (kind ``"stream"``).

    Resume: a re-executed stream whose text matches what the log already holds emits nothing
    for that part; where it says something else it emits a delta from the point it differs,
    and its end message is not said twice when the whole text is the same (the message's id is
    derived from the text, as every message's is).
    """

    FLUSH_CHARS = 4096
    FLUSH_S = 0.05

    def __init__(self, channel: Channel, name: str = "") -> None:
        self._channel = channel
        node = channel._node
        self._node = node
        self.stream_id = derived_id("s", node.run_id, node.identity(f"stream|{content_hash([channel.key, name])}"))
        self._parts: list[str] = []  # everything said
        self._pending: list[str] = []  # said, not yet flushed
        self._pending_chars = 0
        self._flushed = 0  # characters of the text the log holds (or holds from before)
        j = node.run.journal
        # What an earlier execution of this run said on this stream; None once we differ.
        self._known: str | None = j.streams.get(self.stream_id) if j is not None and not j.tools_only else None
        self._last_flush = -float("inf")
        self._kick: Any = None
        self._nursery_cm: Any = None
        self._nursery: Any = None
        self._ended = False

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def delta(self, piece: str) -> None:
        if self._ended:
            raise RuntimeError(f"stream {self.stream_id} has ended")
        piece = str(piece)
        if piece:
            self._parts.append(piece)
            self._pending.append(piece)
            self._pending_chars += len(piece)
            now = trio.current_time()
            if self._pending_chars >= self.FLUSH_CHARS or now - self._last_flush >= self.FLUSH_S:
                self._flush()
            elif self._kick is not None:
                self._kick.set()  # the flusher sends it when FLUSH_S has passed
        await _checkpoint()

    def _flush(self) -> None:
        self._last_flush = trio.current_time()
        if not self._pending:
            return
        new = "".join(self._pending)
        self._pending.clear()
        self._pending_chars = 0
        start = self._flushed
        self._flushed += len(new)
        known = self._known
        if known is not None:
            if known.startswith(new, start):
                return  # the log has said exactly this already
            # Differs from what was said before: say it from the first character that differs.
            c = 0
            limit = min(len(new), len(known) - start)
            while c < limit and new[c] == known[start + c]:
                c += 1
            self._known = None
            start, new = start + c, new[c:]
        self._node.emit(ev.StreamDelta, stream_id=self.stream_id, offset=start, text=new,
                        channel=self._channel.key)

    async def _flusher(self) -> None:
        while not self._ended:
            if not self._pending:  # checked first: a piece said before this task ran is not missed
                self._kick = trio.Event()
                await self._kick.wait()
                continue
            await trio.sleep_until(self._last_flush + self.FLUSH_S)
            self._flush()

    async def end(self, *, stopped: str = "") -> None:
        """Flush what is left and say the whole text as one message (once; later calls do
        nothing)."""
        if self._ended:
            return
        self._ended = True
        self._flush()
        text = self.text
        if text or stopped:
            data: dict[str, Any] = {"stream": self.stream_id}
            if stopped:
                data["stopped"] = stopped
            self._channel._send(text, "stream", data)
        await _checkpoint()

    async def __aenter__(self) -> Stream:
        # A nursery for the flusher only (opened here, closed in __aexit__ by the same task).
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._nursery.start_soon(self._flusher)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                await self.end()
            elif not self._ended:
                # What was said stays said; the message records that the stream stopped early.
                self._ended = True
                self._flush()
                self._channel._send(self.text, "stream", {"stream": self.stream_id, "stopped": exc_type.__name__})
        finally:
            cm, self._nursery_cm = self._nursery_cm, None
            if cm is not None:
                self._nursery.cancel_scope.cancel()  # the flusher is all it holds
                # The body's own exception is not handed to the nursery: it propagates as it
                # is (the nursery would wrap it in an ExceptionGroup).
                await cm.__aexit__(None, None, None)
        return False


class ProgressReporter:
    def __init__(self, node: NodeHandle, title: str, total: float | None) -> None:
        self._node = node
        self.progress_id = derived_id("p", node.run_id, node.identity(f"progress|{content_hash(title)}"))
        self.title = title
        self.total = total
        self.current = 0.0
        self._started = False
        self._ended = False

    def _emit(self, state: str, subtitle: str = "") -> None:
        self._node.emit(
            ev.Progress,
            progress_id=self.progress_id,
            title=self.title,
            state=state,
            current=self.current,
            total=self.total,
            subtitle=subtitle,
        )

    async def start(self) -> None:
        if not self._started:
            self._started = True
            self._emit("start")
        await _checkpoint()

    async def update(
        self, current: float | None = None, *, inc: float | None = None, subtitle: str = "",
        total: float | None = None,
    ) -> None:
        if not self._started:
            await self.start()
        if total is not None:
            self.total = total
        if current is not None:
            self.current = float(current)
        if inc is not None:
            self.current += inc
        self._emit("update", subtitle)
        await _checkpoint()

    async def end(self, subtitle: str = "") -> None:
        if self._ended:
            return
        if not self._started:
            await self.start()
        self._ended = True
        self._emit("end", subtitle)
        await _checkpoint()

    async def __aenter__(self) -> ProgressReporter:
        await self.start()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            await self.end()
        elif not self._ended:
            self._ended = True
            self._emit("end", f"stopped: {exc_type.__name__}")


_HEAD = 64 * 1024


def _size(n: int) -> str:
    return _size_text(n)


async def _checkpoint() -> None:
    await trio.lowlevel.checkpoint()
