"""The channel a node uses to talk to people.

Sending records a ``message_sent`` event; whatever channels are attached show it (the console
prints it). Asking goes through the runtime's ask broker: the first valid answer from any
attached channel wins, and the answer is recorded with who gave it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtime import events as ev
from runtime.ids import derived_id
from runtime.journal import content_hash

if TYPE_CHECKING:
    from runtime.engine import NodeHandle

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

    async def send_file(self, ref: str, *, text: str = "") -> None:
        self._send(text or f"file: {ref}", "file", ref)
        await _checkpoint()

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

    # -- progress -----------------------------------------------------------------------------

    def progress(self, title: str = "", total: float | None = None) -> ProgressReporter:
        """``async with channel.progress(title="Fetching", total=10) as p: await p.update(inc=1)``"""
        return ProgressReporter(self._node, title, total)


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


async def _checkpoint() -> None:
    import trio

    await trio.lowlevel.checkpoint()
