"""Trio in guest mode on Textual's asyncio loop.

Textual owns the terminal and runs on asyncio; the runtime and its sidecar client are trio.
Rather than a second thread (and locks around every widget), trio runs as a *guest* of the
asyncio loop: its tasks execute on the same thread, between Textual's callbacks, so a trio task
may post a Textual message without any cross-thread hand-off. Only trio's I/O wait happens in a
helper thread, which trio manages itself.

The bridge owns one root cancel scope. ``stop()`` cancels it and waits for trio to report that
it finished, so nothing trio started outlives the app (the hosted runtime, with ``--run``,
flushes its log on the way out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger("aethergraph.tui")


class BridgeClosed(RuntimeError):
    """The trio side is not running (not started yet, or already stopped)."""


class TrioBridge:
    def __init__(self, main: Callable[[trio.Nursery], Awaitable[Any]]) -> None:
        # ``main(nursery)`` is the long-lived trio work (attach loops, a hosted runtime).
        self._main_fn = main
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._done: asyncio.Future | None = None
        self._stopping = False
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._nursery is not None and not self._stopping

    def start(self) -> None:
        """Start the guest run; call from a coroutine running on the app's loop."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._done = loop.create_future()
        trio.lowlevel.start_guest_run(
            self._trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=self._on_done,
            # The wakeup fd belongs to the host (asyncio sets it when it handles signals); trio
            # needs none here: the dashboard never asks trio for signals (Ctrl-C is a key in
            # Textual's raw mode, and a hosted runtime opens with handle_sigint=False).
            host_uses_signal_set_wakeup_fd=True,
        )

    async def _trio_main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await self._main_fn(nursery)
                    # main returned: keep serving calls until stopped.
                    await trio.sleep_forever()
            finally:
                self._nursery = None

    def _on_done(self, outcome: Any) -> None:
        try:
            outcome.unwrap()
        except BaseException as exc:  # noqa: BLE001 - reported, never swallowed
            self.error = exc
            log.error("the dashboard's trio side stopped with an error", exc_info=exc)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- calling into trio from the UI ------------------------------------------------------------

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> asyncio.Future:
        """Run ``fn(*args)`` as a trio task; the returned asyncio future gets its result.

        The task lives in the bridge's nursery, so it is cancelled with everything else when
        the app stops (its future is then cancelled too).
        """
        assert self._loop is not None
        fut: asyncio.Future = self._loop.create_future()
        if not self.running or self._token is None:
            fut.set_exception(BridgeClosed("the dashboard is shutting down"))
            return fut

        def spawn() -> None:
            if self._nursery is None:
                if not fut.done():
                    fut.set_exception(BridgeClosed("the dashboard is shutting down"))
                return
            self._nursery.start_soon(self._run_one, fn, args, fut)

        self._token.run_sync_soon(spawn)
        return fut

    @staticmethod
    async def _run_one(fn: Callable[..., Awaitable[Any]], args: tuple, fut: asyncio.Future) -> None:
        try:
            result = await fn(*args)
        except trio.Cancelled:
            if not fut.done():
                fut.cancel()
            raise
        except Exception as exc:  # handed to whoever awaits the future
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(result)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``fn(*args)`` in trio, fire and forget (errors are the task's own business)."""
        if not self.running or self._token is None:
            return

        def go() -> None:
            if self._nursery is not None:
                self._nursery.start_soon(fn, *args)

        self._token.run_sync_soon(go)

    async def stop(self, timeout: float = 15.0) -> None:
        """Cancel everything trio runs and wait until it has finished."""
        if self._done is None:
            return
        self._stopping = True
        if not self._done.done() and self._token is not None:
            try:
                self._token.run_sync_soon(self._cancel)
            except trio.RunFinishedError:
                pass
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except asyncio.TimeoutError:
            log.error("trio did not stop within %.0fs", timeout)

    def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
