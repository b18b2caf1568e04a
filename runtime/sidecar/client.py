"""A trio client for the sidecar, used by the CLI and the dashboard.

    async with SidecarClient.connect(advert, client="ag") as c:
        await c.answer("ask-1a2b3c", "no")
        async with c.subscribe(run_id) as events:
            async for event in events: ...

Requests return their result or raise the error the server raised: the class of
runtime/errors.py its code names (``UnknownAsk``, ``InvalidAnswer``, ..., all ``SidecarError``). A subscription
that the server drops (a slow consumer) is resumed transparently from the last seq received, so
a subscriber sees every event exactly once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket, wrap_client_stream

from .. import events as ev
from .._exc import unwrap_single
from ..errors import ConnectionLost, NoRuntime, SidecarError
from ..info import AskInfo, RunInfo
from ..store.layout import StoreLayout
from . import protocol as p
from .registry import Advert, live_adverts, read_token


__all__ = ["LIVE", "NoRuntime", "SidecarClient", "SidecarError", "connect_for_run", "each_runtime",
           "find_runtimes"]


class Live:
    """Marker yielded by a subscription when its snapshot is complete."""

    def __repr__(self) -> str:
        return "<live>"


LIVE = Live()


class SidecarClient:
    def __init__(self, ws: WebSocketConnection, advert: Advert | None) -> None:
        self.ws = ws
        self.advert = advert
        self.welcome: p.Welcome | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, tuple[trio.Event, list]] = {}
        self._subs: dict[int, trio.MemorySendChannel] = {}
        self._closed = False
        self._error: BaseException | None = None

    # -- connecting ---------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        advert: Advert,
        *,
        client: str = "ag",
        token: str | None = None,
        prefer_tcp: bool = False,
        timeout: float = 5.0,
    ) -> AsyncIterator[SidecarClient]:
        with unwrap_single():
            async with trio.open_nursery() as nursery:
                with trio.fail_after(timeout):
                    ws = await _open_ws(nursery, advert, prefer_tcp)
                self = cls(ws, advert)
                nursery.start_soon(self._receive_loop)
                try:
                    with trio.fail_after(timeout):
                        await self._hello(client, read_token(advert) if token is None else token)
                    yield self
                finally:
                    self._closed = True
                    with trio.CancelScope(shield=True):
                        with trio.move_on_after(1):
                            await ws.aclose()
                    nursery.cancel_scope.cancel()

    async def _hello(self, client: str, token: str) -> None:
        self._welcome_event = trio.Event()
        await self._send(p.Hello(protocol=p.PROTOCOL_VERSION, token=token, client=client))
        await self._welcome_event.wait()
        if self._error is not None:
            raise self._error

    async def _send(self, msg: p.Msg) -> None:
        try:
            await self.ws.send_message(p.ENCODER.encode(msg))
        except ConnectionClosed as exc:
            raise ConnectionLost(f"the runtime closed the connection ({exc.reason})") from None

    # -- the receive loop ---------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        try:
            while True:
                raw = await self.ws.get_message()
                try:
                    msg = p.CLIENT_SIDE_DECODER.decode(raw)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    msg = p.SERVER_DECODER.decode(raw)  # its events are decoded one by one
                t = type(msg)
                if t is p.Reply:
                    waiter = self._replies.pop(msg.id, None)
                    if waiter is not None:
                        waiter[1].append(msg)
                        waiter[0].set()
                elif t is p.DecodedEventFrame or t is p.EventFrame:
                    chan = self._subs.get(msg.sub)
                    if chan is not None:
                        # The frame's events as one item: a channel hand-off costs a trip
                        # through trio's scheduler, which per event was most of a
                        # subscriber's time at tens of thousands of events a second.
                        chan.send_nowait(msg.events)
                elif t is p.Live or t is p.Dropped:
                    chan = self._subs.get(msg.sub)
                    if chan is not None:
                        chan.send_nowait(msg)
                elif t is p.Welcome:
                    self.welcome = msg
                    self._welcome_event.set()
                elif t is p.Error:
                    self._error = SidecarError.from_wire(msg.code, msg.message)
                    if self.welcome is None:
                        self._welcome_event.set()
        except ConnectionClosed as exc:
            self._error = self._error or ConnectionLost(f"the runtime closed the connection ({exc.reason})")
        finally:
            self._closed = True
            if self.welcome is None and hasattr(self, "_welcome_event"):
                self._welcome_event.set()
            for event, box in list(self._replies.values()):
                event.set()
            self._replies.clear()
            for chan in list(self._subs.values()):
                chan.close()
            self._subs.clear()

    # -- requests -----------------------------------------------------------------------------

    async def request(self, msg_type: type[p.Msg], **fields: Any) -> Any:
        if self._closed:
            raise self._error or ConnectionLost("the connection is closed")
        msg_id = next(self._ids)
        done = trio.Event()
        box: list = []
        self._replies[msg_id] = (done, box)
        await self._send(msg_type(id=msg_id, **fields))
        await done.wait()
        if not box:
            raise self._error or ConnectionLost("the runtime went away before replying")
        reply = box[0]
        if not reply.ok:
            raise SidecarError.from_wire(reply.error.code, reply.error.message)
        return reply.result

    async def answer(self, ask_id: str, value: str) -> str:
        return (await self.request(p.Answer, ask_id=ask_id, value=value))["answer"]

    async def cancel(self, run_id: str, node: str = "", reason: str = "") -> None:
        await self.request(p.Cancel, run_id=run_id, node=node, reason=reason)

    async def retry(self, run_id: str, node: str) -> None:
        await self.request(p.Retry, run_id=run_id, node=node)

    async def resume(self, run_id: str) -> dict[str, Any]:
        """Start a process of its own resuming ``run_id``: ``{"pid", "host", "output", …}``."""
        return await self.request(p.Resume, run_id=run_id)

    async def list_runs(self) -> list[RunInfo]:
        return msgspec.convert(await self.request(p.ListRuns), list[RunInfo])

    async def list_asks(self) -> list[AskInfo]:
        return msgspec.convert(await self.request(p.ListAsks), list[AskInfo])

    # -- subscriptions ------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self, run_id: str = "", *, after_seq: int = 0, since: float = 0.0, snapshot: bool = True,
        live_marker: bool = False,
    ) -> AsyncIterator[AsyncIterator[ev.Event | Live]]:
        """Events of ``run_id`` (or every run of the runtime), decoded, in order, once each."""
        last: dict[str, int] = {run_id: after_seq} if run_id and after_seq else {}
        state = {"sub": None}

        async def open_sub(after: dict[str, int], snap: bool) -> trio.MemoryReceiveChannel:
            sub_id = next(self._ids)
            send, recv = trio.open_memory_channel(math.inf)
            self._subs[sub_id] = send
            state["sub"] = sub_id
            done = trio.Event()
            box: list = []
            self._replies[sub_id] = (done, box)
            await self._send(p.Subscribe(id=sub_id, run_id=run_id, after=after, since=since, snapshot=snap))
            await done.wait()
            if not box:
                raise self._error or ConnectionLost("the runtime went away")
            if not box[0].ok:
                self._subs.pop(sub_id, None)
                raise SidecarError.from_wire(box[0].error.code, box[0].error.message)
            return recv

        recv = await open_sub(dict(last), snapshot)

        async def events() -> AsyncIterator[ev.Event | Live]:
            nonlocal recv
            decode = ev.DECODER.decode
            while True:
                try:
                    item = await recv.receive()
                except trio.EndOfChannel:
                    if self._error is not None:
                        raise self._error
                    return
                if type(item) is list:  # one frame's events, decoded (or msgspec.Raw each)
                    if item and type(item[0]) is msgspec.Raw:
                        item = [decode(raw) for raw in item]
                    for event in item:
                        if event.seq <= last.get(event.run_id, 0):
                            continue
                        last[event.run_id] = event.seq
                        yield event
                elif type(item) is p.Live:
                    if live_marker:
                        yield LIVE
                elif type(item) is p.Dropped:
                    # Too slow for the live stream: catch up from the log and carry on.
                    self._subs.pop(item.sub, None)
                    recv = await open_sub(dict(last), True)

        try:
            yield events()
        finally:
            sub_id = state["sub"]
            if sub_id is not None and self._subs.pop(sub_id, None) is not None and not self._closed:
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    try:
                        await self.request(p.Unsubscribe, sub=sub_id)
                    except SidecarError:
                        pass


async def _open_ws(nursery: trio.Nursery, advert: Advert, prefer_tcp: bool) -> WebSocketConnection:
    use_unix = advert.unix and Path(advert.unix).exists() and not (prefer_tcp and advert.tcp)
    kwargs = dict(max_message_size=p.WS_MAX_MESSAGE_BYTES, receive_buffer_size=65536)
    if use_unix:
        stream = await trio.open_unix_socket(advert.unix)
        return await wrap_client_stream(nursery, stream, "localhost", "/", **kwargs)
    if advert.tcp:
        host, _, port = advert.tcp.rpartition(":")
        return await connect_websocket(nursery, host, int(port), "/", use_ssl=False, **kwargs)
    raise NoRuntime(f"runtime {advert.runtime_id} advertises no address this client can use")


# -- finding runtimes ---------------------------------------------------------------------------


def find_runtimes(home: str | None = None) -> list[Advert]:
    layout = StoreLayout.at(home)
    return live_adverts(layout) if layout.exists() else []


@asynccontextmanager
async def connect_for_run(home: str | None, run_id: str, *, client: str = "ag") -> AsyncIterator[SidecarClient]:
    """A client connected to the live runtime that is executing ``run_id``."""
    adverts = find_runtimes(home)
    if not adverts:
        raise NoRuntime("no live runtime found in this store")
    target = None
    for advert in sorted(adverts, key=lambda a: run_id not in a.runs):
        try:
            async with SidecarClient.connect(advert, client=client) as c:
                if any(r.run_id == run_id for r in await c.list_runs()):
                    target = advert
                    break
        except (OSError, trio.TooSlowError, SidecarError, ConnectionClosed):
            continue
    if target is None:
        raise NoRuntime(f"run {run_id} is not running in any live runtime")
    async with SidecarClient.connect(target, client=client) as c:
        yield c


async def each_runtime(home: str | None, fn, *, client: str = "ag") -> list[Any]:
    """``fn(client)`` for every reachable live runtime; unreachable ones are skipped."""
    out = []
    for advert in find_runtimes(home):
        try:
            async with SidecarClient.connect(advert, client=client) as c:
                out.append(await fn(c))
        except (OSError, trio.TooSlowError, SidecarError, ConnectionClosed):
            continue
    return out
