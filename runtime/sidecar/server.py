"""The sidecar server: one trio-websocket endpoint per runtime, supervised by its nursery.

Every connection is a small supervisor of its own: a receive loop that answers requests, and a
send loop that is the only writer to the socket. Events reach the sidecar from the log
writer, with the bytes the log gets, through one shared ``Feed`` (nothing per event, whoever
watches); each subscription reads it from its own cursor, a frame at a time, on its
connection's send loop. A subscriber that falls behind is dropped with the last seq it was
sent, and resubscribes from there — the gap is read back from the log, so it never misses an
event and never slows the run it watches.
"""

from __future__ import annotations

import heapq
import hmac
import logging
import math
import os
import socket
import time
from bisect import bisect_right
from collections import deque
from functools import partial
from itertools import islice
from typing import Any

import attrs
import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from .. import events as ev
from ..errors import (
    BadMessage,
    BadProtocol,
    CannotResume,
    Internal,
    MessageTooLarge,
    NotAuthenticated,
    SidecarError,
    UnknownAsk,
    UnknownRun,
)
from ..history import HOST
from ..info import AskInfo, RunInfo
from ..store import owner
from ..store.layout import private_dirs
from ..store.logfile import read_log
from ..store.segment import Segment
from . import protocol as p
from .registry import (Advert, new_runtime_id, owner_key, remove_advert, remove_stale_adverts, socket_path,
                       sweep_dead_sockets, write_advert, write_token)

log = logging.getLogger("aethergraph.sidecar")

TCP_ENV = "AETHERGRAPH_SIDECAR_TCP"
SUBSCRIBER_QUEUE = 20_000  # events a subscription may fall behind before it is dropped
BATCH = 1000  # events per frame at most
COALESCE_ROUNDS = 32  # scheduler rounds a send loop lets a burst grow (BATCH events end it sooner)
OUTBOX_HIGH = 64  # control frames queued before a snapshot waits for the socket
# Until its hello a client is a stranger: it gets this long from accept (websocket handshake
# included), may send this many bytes, and only this many strangers are held per listener.
HELLO_TIMEOUT = 5.0
PRE_HELLO_BYTES = 64 << 10
MAX_UNAUTHENTICATED = 64


# What a client going away looks like; it must never take the runtime down.
_GONE_CLIENT = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)
_GONE = (*_GONE_CLIENT, trio.Cancelled)


def parse_tcp(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"sidecar TCP address must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class Sidecar:
    def __init__(self, runtime: Any, *, tcp: str | None = None) -> None:
        self.rt = runtime
        self.layout = runtime.layout
        self.tcp = tcp
        self.runtime_id = new_runtime_id()
        self.advert: Advert | None = None
        self.token = ""
        self.connections: set[Connection] = set()
        self._strangers = {"tcp": 0, "unix": 0}  # connections not yet past hello, per listener
        self._dirty = trio.Event()
        self.feed = Feed(runtime)

    def answer_source(self) -> SidecarAnswers:
        return SidecarAnswers(self)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        layout = self.layout
        private_dirs(layout.runtimes_dir)
        os.chmod(layout.runtimes_dir, 0o700)
        # Alive from here until the advert is gone: readers ask this lock, not our pid. Holding
        # it, we clear what runtimes that died on this store left behind (readers never do).
        owner.acquire(layout, owner_key(self.runtime_id))
        try:
            remove_stale_adverts(layout)
            await self._serve(layout, task_status)
        finally:
            owner.release(layout, owner_key(self.runtime_id))

    async def _serve(self, layout: Any, task_status) -> None:
        sock_path = socket_path(layout, self.runtime_id)
        if sock_path.parent != layout.runtimes_dir:  # the shared folder under the temp dir
            sweep_dead_sockets(sock_path.parent)
        # Bound and listening under a name no client looks for, then renamed into place: a
        # socket under its final name always has a listener while its process lives, so a
        # sweep that is refused knows the socket is dead.
        binding = sock_path.with_suffix(".bind")  # no longer than the final name: it fits too
        for stale in (sock_path, binding):
            if stale.exists():
                stale.unlink()
        # What this runtime has put in the store so far; removed however the start ends (a
        # start that fails half-way, EMFILE or a full disk, leaves no socket without an advert).
        self.advert = Advert(runtime_id=self.runtime_id, pid=os.getpid(), host=HOST, started=time.time(),
                             protocol=p.PROTOCOL_VERSION, unix=str(sock_path), home=str(layout.home),
                             locked=True)
        unlisten = None
        try:
            unix_sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                await unix_sock.bind(str(binding))
                os.chmod(binding, 0o600)
                unix_sock.listen(128)
                os.rename(binding, sock_path)
            except BaseException:
                unix_sock.close()
                binding.unlink(missing_ok=True)
                raise
            listeners = [(trio.SocketListener(unix_sock), False)]
            if self.tcp:
                host, port = parse_tcp(self.tcp)
                if host not in ("127.0.0.1", "::1", "localhost"):
                    log.warning("sidecar listening on %s beyond loopback, as asked; a token is required", host)
                tcp_listeners = await trio.open_tcp_listeners(port, host=host)
                listeners += [(lst, True) for lst in tcp_listeners]
                bound = tcp_listeners[0].socket.getsockname()
                self.advert.tcp = f"{bound[0]}:{bound[1]}"
                self.advert.token_file = str(layout.runtimes_dir / f"{self.runtime_id}.token")
                _, self.token = write_token(layout, self.runtime_id)
            self.advert.runs = list(self.rt.runs)
            write_advert(layout, self.advert)
            unlisten = self.rt.on_runs_changed(self._dirty.set)
            async with trio.open_nursery() as nursery:
                for listener, needs_token in listeners:
                    await nursery.start(
                        partial(trio.serve_listeners, partial(self._serve_stream, needs_token=needs_token),
                                [listener], handler_nursery=nursery)
                    )
                nursery.start_soon(self._keep_advert_fresh)
                task_status.started(self)
        finally:
            if unlisten is not None:
                unlisten()
            remove_advert(layout, self.advert)

    async def drain(self, timeout: float = 1.0) -> None:
        """Give every client what is already queued for it (the last events of runs that just
        ended) before the runtime closes; a client that does not read gets ``timeout``."""
        with trio.move_on_after(timeout):
            for conn in list(self.connections):
                await conn.wait_sent()

    async def _keep_advert_fresh(self) -> None:
        """Rewrite the advert when runs start or end, at most ten times a second.

        A rewrite that fails (a full disk, a full fd table) leaves the last advert in place:
        it still says where to connect, only its list of runs is behind (``ag attach`` of a
        run started since says no live runtime has it). That is said once as a warning and
        tried again every second until it works; it does not end the runtime and its runs,
        whose own writes fail them by the log's rules if the disk is what is full."""
        failing = False
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            self.advert.runs = list(self.rt.runs)
            try:
                await trio.to_thread.run_sync(write_advert, self.layout, self.advert)
            except OSError as exc:
                if not failing:
                    log.warning("the sidecar cannot update this runtime's advert (%s); clients still "
                                "reach it, but its list of runs is behind until this clears", exc)
                failing = True
                self._dirty.set()
                await trio.sleep(1.0)
                continue
            if failing:
                log.warning("the sidecar's advert is up to date again")
                failing = False
            await trio.sleep(0.1)

    async def _serve_stream(self, stream: trio.abc.Stream, *, needs_token: bool) -> None:
        """One client: the websocket handshake, then a Connection until either side leaves.

        Until it says hello a client is a stranger, and strangers must not be able to use the
        runtime up (its file descriptors, its memory): each listener holds at most
        ``MAX_UNAUTHENTICATED`` of them (the next is closed at once), each gets
        ``HELLO_TIMEOUT`` seconds from accept and ``PRE_HELLO_BYTES`` bytes, frames included,
        to say it — over budget the socket is closed mid-frame, nothing of it buffered."""
        kind = "tcp" if needs_token else "unix"
        if self._strangers[kind] >= MAX_UNAUTHENTICATED:
            await trio.aclose_forcefully(stream)
            return
        gate = _Gate(self, kind, _Budgeted(stream, PRE_HELLO_BYTES), trio.CancelScope())
        gate.scope.deadline = trio.current_time() + HELLO_TIMEOUT
        self._strangers[kind] += 1
        try:
            with gate.scope:
                async with trio.open_nursery() as nursery:
                    request = await wrap_server_stream(
                        nursery, gate.stream, max_message_size=p.WS_MAX_MESSAGE_BYTES,
                        receive_buffer_size=65536,
                    )
                    ws = await request.accept()
                    conn = Connection(self, ws, needs_token=needs_token, gate=gate)
                    self.connections.add(conn)
                    try:
                        await conn.serve()
                    finally:
                        self.connections.discard(conn)
                        nursery.cancel_scope.cancel()
        except _GONE_CLIENT:
            pass
        except BaseExceptionGroup as group:  # a client that vanished, at any moment
            _, rest = group.split(_GONE)
            if rest is not None:
                raise rest
        finally:
            gate.admit()  # gone or admitted: no longer a stranger either way
            await trio.aclose_forcefully(stream)

    # -- what requests see --------------------------------------------------------------------

    def list_runs(self) -> list[RunInfo]:
        pending: dict[str, int] = {}
        for ask in self.rt.asks.pending.values():
            pending[ask.info.run_id] = pending.get(ask.info.run_id, 0) + 1
        pid, rid = os.getpid(), self.runtime_id
        return [
            RunInfo(run_id=r.run_id, graph=r.graph, started=r.started, last_ts=r.last_ts or None,
                    last_seq=r.seq, pid=pid, host=HOST, nodes=list(r.nodes),
                    pending_asks=pending.get(r.run_id, 0), runtime_id=rid)
            for r in self.rt.runs.values()
        ]

    def list_asks(self) -> list[AskInfo]:
        rid = self.runtime_id
        return [
            msgspec.structs.replace(a.info, runtime_id=rid)
            for a in self.rt.asks.pending.values()
            if a.answer is None
        ]


class _Budgeted(trio.abc.Stream):
    """A stream that lets through at most ``budget`` received bytes, then breaks; lifted
    (``budget = None``) once the client has said hello."""

    def __init__(self, stream: trio.abc.Stream, budget: int) -> None:
        self.stream = stream
        self.budget: int | None = budget

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.budget is None:
            return await self.stream.receive_some(max_bytes)
        # One byte beyond the budget is enough to know it is exceeded; no more is read.
        want = self.budget + 1 if max_bytes is None else min(max_bytes, self.budget + 1)
        data = await self.stream.receive_some(want)
        if self.budget is not None:
            self.budget -= len(data)
            if self.budget < 0:
                raise trio.BrokenResourceError(f"more than {PRE_HELLO_BYTES} bytes before hello")
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


@attrs.define(eq=False)
class _Gate:
    """What keeps a connection a stranger until its hello: the deadline (``scope``), the byte
    budget (``stream``) and its place among the listener's strangers."""

    sidecar: Sidecar
    kind: str
    stream: _Budgeted
    scope: trio.CancelScope
    admitted: bool = False

    def admit(self) -> None:
        if not self.admitted:
            self.admitted = True
            self.sidecar._strangers[self.kind] -= 1
            self.scope.deadline = math.inf
            self.stream.budget = None


class Wakeup:
    """Wakes every task waiting on it now, however many.

    The one wake-up idiom of the sidecar, as ``LogWriter`` does with ``_flushed``: the *setter*
    sets the event and puts a fresh one in its place. A waiter checks its condition, waits,
    and checks again. (Replacing the event on the waiter's side instead strands every earlier
    waiter on an event nobody will set: two snapshots of one connection waiting for room.)
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()

    def set(self) -> None:
        event, self._event = self._event, trio.Event()
        event.set()


class Connection:
    def __init__(self, sidecar: Sidecar, ws: WebSocketConnection, *, needs_token: bool,
                 gate: _Gate | None = None) -> None:
        self.sidecar = sidecar
        self.gate = gate
        self.rt = sidecar.rt
        self.ws = ws
        self.needs_token = needs_token
        self.hello = False
        self.closing = False
        self.gone = False  # the send loop has ended
        self.flushing = False
        self.parked = False  # in the feed's list of send loops to wake at the next event
        self.client = "client"
        self.outbox: deque[bytes] = deque()
        self.subs: dict[int, Subscription] = {}
        # Each is waited on with a condition checked first (see ``Wakeup``): the send loop
        # (there is something to send), snapshots (room in the outbox), drains (all sent).
        self._wake = Wakeup()
        self._room = Wakeup()
        self._sent = Wakeup()
        self.nursery: trio.Nursery | None = None

    # -- sending (only the send loop touches the socket) --------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def send(self, msg: p.Msg) -> None:
        self.outbox.append(p.ENCODER.encode(msg))
        self._wake.set()

    def has_pending(self) -> bool:
        return self.flushing or bool(self.outbox) or self._events_pending()

    def _events_pending(self) -> bool:
        head = self.sidecar.feed.head
        return any(s.live and s.cursor < head for s in self.subs.values())

    async def wait_sent(self) -> None:
        """Until everything queued for this client has been written to its socket (or the
        client is gone)."""
        while self.has_pending() and not self.gone:
            self._wake.set()
            await self._sent.wait()

    async def send_when_room(self, msg: p.Msg) -> None:
        while len(self.outbox) >= OUTBOX_HIGH and not self.gone:
            await self._room.wait()
        self.send(msg)

    async def _send_loop(self) -> None:
        ws = self.ws
        try:
            feed = self.sidecar.feed
            while not self.closing:
                if not self.has_pending():
                    if not self.parked and any(s.live for s in self.subs.values()):
                        feed.park(self)  # the next event wakes this loop
                    await self._wake.wait()
                if not self.outbox and self._events_pending():
                    await self._coalesce(feed)
                await self._flush(ws, once=True)
                self._sent.set()
            await self._flush(ws)
        except _GONE_CLIENT:
            self.closing = True  # the client left; the receive loop ends on its own
        finally:
            # Nothing more will be sent: whoever waits for the socket stops waiting.
            self.gone = True
            self._sent.set()
            self._room.set()

    async def _coalesce(self, feed: Feed) -> None:
        """Let a burst grow into fewer, larger frames: while events keep arriving, give the
        run another scheduler round (a checkpoint, no timer), ``COALESCE_ROUNDS`` at most or
        until a frame holds ``BATCH`` events.

        A frame costs the run's thread its websocket framing and a socket write whatever its
        size; a run recording flat out fills a round with dozens of events. Two quiet rounds
        in a row end the wait: trio runs a round's tasks in random order, so one round may
        show nothing new while the run is still streaming, two cannot. A lone event (an ask
        opening) goes after those two checkpoints — no timer, no added wait beyond them."""
        start = min((s.cursor for s in self.subs.values() if s.live), default=feed.head)
        quiet = 0
        for _ in range(COALESCE_ROUNDS):
            head = feed.head
            await trio.lowlevel.checkpoint()
            if self.outbox or self.closing or feed.head - start >= BATCH:
                return
            quiet = quiet + 1 if feed.head == head else 0
            if quiet == 2:
                return

    async def _flush(self, ws: WebSocketConnection, *, once: bool = False) -> None:
        self.flushing = True
        try:
            await self._flush_all(ws, once)
        finally:
            self.flushing = False

    async def _flush_all(self, ws: WebSocketConnection, once: bool = False) -> None:
        """Send what is queued: everything, or (``once``) the outbox and one frame per
        subscription, so that the send loop lets the next frame grow (``_coalesce``)."""
        busy = True
        while busy:
            busy = False
            while self.outbox:
                # Popped only once sent: a frame is never lost to a cancelled send.
                await ws.send_message(self.outbox[0])
                self.outbox.popleft()
                if len(self.outbox) < OUTBOX_HIGH:
                    self._room.set()
                busy = True
            for sub in list(self.subs.values()):
                frame = sub.take_batch()
                if frame is not None:
                    await ws.send_message(frame)
                    busy = True
                elif sub.live and not sub.closed and sub.cursor < sub.feed.head:
                    busy = True  # a stretch of other runs' events, skipped: look again
            self.sidecar.feed.trim()
            busy = busy and not once

    # -- receiving ----------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._send_loop)
                try:
                    await self._receive_loop()
                finally:
                    # The sender finishes what is queued (an error telling the client why it
                    # is being let go, say), but gets a second at most.
                    self.closing = True
                    self._wake.set()
                    nursery.cancel_scope.deadline = min(
                        nursery.cancel_scope.deadline, trio.current_time() + 1
                    )
        except ConnectionClosed:
            pass
        finally:
            # Let the client see what was already queued (the last events of a run that just
            # ended) before the socket goes.
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await self._flush(self.ws)
                    await self.ws.aclose()
                except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            for sub in list(self.subs.values()):
                sub.close()
            self.subs.clear()

    async def _receive_loop(self) -> None:
        while True:
            try:
                raw = await self.ws.get_message()
            except ConnectionClosed:
                return
            data = raw.encode() if isinstance(raw, str) else raw
            if len(data) > p.MAX_MESSAGE_BYTES:
                self.send(p.error_frame(MessageTooLarge(
                    f"message of {len(data)} bytes; the limit is {p.MAX_MESSAGE_BYTES}")))
                continue
            try:
                msg = p.CLIENT_DECODER.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.send(p.error_frame(BadMessage(str(exc)[:300])))
                if not self.hello:
                    return
                continue
            if not self.hello:
                if not self._greet(msg):
                    return
                continue
            if type(msg) is p.Hello:
                self.send(p.error_frame(BadMessage("hello was already said")))
                continue
            try:
                result = await self._dispatch(msg)
            except SidecarError as exc:
                self.send(p.Reply(id=msg.id, ok=False, error=p.error_body(exc)))
            except Exception as exc:  # a bug of ours must not take the server down
                log.exception("sidecar request failed")
                self.send(p.Reply(id=msg.id, ok=False, error=p.error_body(Internal(repr(exc)))))
            else:
                self.send(p.Reply(id=msg.id, result=result))

    def _greet(self, msg: p.Msg) -> bool:
        if type(msg) is not p.Hello:
            self.send(p.error_frame(NotAuthenticated("the first message must be hello")))
            return False
        if msg.protocol != p.PROTOCOL_VERSION:
            self.send(p.error_frame(BadProtocol(
                f"protocol {msg.protocol} is not supported; this runtime speaks {p.PROTOCOL_VERSION}")))
            return False
        if self.needs_token and not hmac.compare_digest(msg.token.encode(), self.sidecar.token.encode()):
            self.send(p.error_frame(NotAuthenticated("wrong or missing token")))
            return False
        self.hello = True
        if self.gate is not None:
            self.gate.admit()
        self.client = (msg.client or "client")[:64]
        self.send(p.Welcome(protocol=p.PROTOCOL_VERSION, pid=os.getpid(), host=HOST,
                            runtime_id=self.sidecar.runtime_id))
        return True

    async def _dispatch(self, msg: p.Msg) -> Any:
        t = type(msg)
        rt = self.rt
        by = f"{self.client} (sidecar)"
        if t is p.Subscribe:
            if msg.id in self.subs:
                raise BadMessage(f"subscription {msg.id} exists")
            if msg.run_id:
                path = rt.layout.run_log(msg.run_id)  # UnknownRun for what is no run id
                if msg.run_id not in rt.runs and not path.exists():
                    await rt.writer.wait_durable()  # a run that just ended here may be unwritten
                    if not path.exists():
                        raise UnknownRun(msg.run_id)
            sub = Subscription(self, msg)
            self.subs[msg.id] = sub
            self.nursery.start_soon(sub.start)
            return {"sub": msg.id}
        if t is p.Unsubscribe:
            sub = self.subs.pop(msg.sub, None)
            if sub is None:
                raise BadMessage(f"no subscription {msg.sub}")
            sub.close()
            return None
        if t is p.Answer:
            try:
                answer = rt.asks.answer(msg.ask_id, msg.value, by=by)  # InvalidAnswer passes on
            except UnknownAsk:
                raise UnknownAsk(f"no open ask {msg.ask_id!r} in this runtime") from None
            return {"answer": answer}
        if t is p.Cancel or t is p.Retry:
            try:  # UnknownNode passes on as it is
                if t is p.Cancel:
                    rt.cancel(msg.run_id, msg.node or None, reason=msg.reason or f"cancelled by {self.client}", by=by)
                else:
                    rt.retry(msg.run_id, msg.node, by=by)
            except UnknownRun:
                raise UnknownRun(msg.run_id, f"run {msg.run_id} is not running here") from None
            return None
        if t is p.Resume:
            resumer = rt.config.resumer
            if resumer is None:
                raise CannotResume("this runtime cannot resume runs")
            # The run gets a process of its own (``ag resume RUN``, detached): hosted here it
            # would lack its entrypoint's services and end with this unrelated runtime.
            try:
                await resumer.check(rt, msg.run_id)
                return await resumer.start(rt, msg.run_id)
            except CannotResume:
                raise
            except Exception as exc:
                raise CannotResume(str(exc)) from None
        if t is p.ListRuns:
            return self.sidecar.list_runs()
        if t is p.ListAsks:
            return self.sidecar.list_asks()
        raise BadMessage(f"unexpected {t.__struct_config__.tag}")


class Feed:
    """The runtime's events as the sidecar's subscriptions read them: straight from the log
    writer, with the bytes the log gets — its batches as they leave the buffers (``tap``, one
    call per batch) and its live buffers (``buffered``) — read by each subscription from its
    own cursor (a writer ticket: events are numbered in the order emitted) on its connection's
    send loop, and trimmed below the slowest cursor.

    A run being watched pays nothing per event for it: its events are encoded into the
    writer's buffer as when nobody watches, and a frame is cut from those bytes, a run's
    stretch of a batch at a time. A send loop with nothing to send parks here and rings a
    doorbell on the runtime's bus, which the first event after that takes down. A subscription
    whose cursor falls ``SUBSCRIBER_QUEUE`` events behind the head is dropped (it resubscribes
    from its last seq and reads the gap from the log), checked at every batch and whenever its
    send loop comes to take a frame."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.chunks: deque[Chunk] = deque()  # batches taken since the slowest cursor, in order
        self.subs: set[Subscription] = set()
        self.waiting: list[Connection] = []  # send loops asleep until the next event
        self._untap: Any = None
        self._bell: Any = None  # the doorbell's unsubscribe while it hangs on the bus

    @property
    def head(self) -> int:
        return self.rt.writer.last_ticket

    def add(self, sub: Subscription) -> int:
        """Follow the feed from now on; returns the cursor to start from."""
        if not self.subs:
            self.chunks.clear()
            self._untap = self.rt.writer.tap(self._taken)
        self.subs.add(sub)
        return self.head

    def remove(self, sub: Subscription) -> None:
        self.subs.discard(sub)
        if not self.subs and self._untap is not None:
            self._untap()
            self._untap = None
            self.chunks.clear()

    def park(self, conn: Connection) -> None:
        """Wake ``conn`` at the next event."""
        conn.parked = True
        self.waiting.append(conn)
        if self._bell is None:
            self._bell = self.rt.subscribe(self._ring)

    def _ring(self, event: ev.Event, encoded: bytes) -> None:
        bell, self._bell = self._bell, None
        if bell is not None:
            bell()
        for conn in self.waiting:
            conn.parked = False
            conn.wake()
        self.waiting.clear()

    def _taken(self, segments: list[Segment]) -> None:
        """A batch leaves the writer's buffers: keep it while a cursor is short of it."""
        self.chunks.extend(Chunk(s.run_id, s.data, s.start, s.events, s.offsets, s.tickets)
                           for s in segments)
        head = self.head
        for sub in list(self.subs):
            if head - sub.cursor >= SUBSCRIBER_QUEUE:
                sub._drop_behind()
        self.trim()

    def trim(self) -> None:
        """Forget the batches every cursor has passed."""
        chunks = self.chunks
        low = min((sub.cursor for sub in self.subs), default=self.head)
        while chunks and chunks[0].tickets[-1] <= low:
            chunks.popleft()

    def spans(self, cursor: int, run_id: str, limit: int) -> list[tuple[Chunk, int, int]]:
        """The events after ``cursor`` (``run_id``'s, or all), ``limit`` at most, in the order
        emitted, as ``(chunk, i, j)``: a stretch of one batch of one run."""
        chunks = [c for c in self.chunks if c.tickets[-1] > cursor and (not run_id or c.run_id == run_id)]
        chunks += [Chunk(s.run_id, s.data, s.start, s.events, s.offsets, s.tickets)
                   for s in self.rt.writer.buffered(run_id) if s.tickets[-1] > cursor]
        starts = [bisect_right(c.tickets, cursor) for c in chunks]
        # One run's batches follow each other; several runs' interleave within a batch.
        if all(a.tickets[-1] < b.tickets[i] for a, b, i in zip(chunks, chunks[1:], starts[1:])):
            spans = []
            for c, i in zip(chunks, starts):
                j = min(len(c.tickets), i + limit)
                spans.append((c, i, j))
                limit -= j - i
                if not limit:
                    break
            return spans
        order = heapq.merge(*[[(c.tickets[k], n, k) for k in range(i, len(c.tickets))]
                              for n, (c, i) in enumerate(zip(chunks, starts))])
        spans = []
        for _, n, k in islice(order, limit):
            if spans and spans[-1][0] is chunks[n] and spans[-1][2] == k:
                spans[-1] = (chunks[n], spans[-1][1], k + 1)
            else:
                spans.append((chunks[n], k, k + 1))
        return spans


class Chunk:
    """Events of one run as the log writer holds them: its bytes (``start`` is the file offset
    of ``data[0]``), one line per event, with each event, its offset and its ticket."""

    __slots__ = ("run_id", "data", "start", "events", "offsets", "tickets")

    def __init__(self, run_id: str, data: bytes | bytearray, start: int, events: list[ev.Event],
                 offsets: list[int], tickets: list[int]) -> None:
        self.run_id = run_id
        self.data = data
        self.start = start
        self.events = events
        self.offsets = offsets
        self.tickets = tickets

    def lines(self, i: int, j: int) -> bytes | bytearray:
        """Events ``i`` to ``j - 1``, their log lines joined by commas (JSON escapes every
        newline in a string: a raw one only ends a line)."""
        offsets, start = self.offsets, self.start
        end = offsets[j] - start if j < len(offsets) else len(self.data)
        return self.data[offsets[i] - start : end - 1].replace(b"\n", b",")


class Subscription:
    """Events for one subscriber: the log's snapshot first, then live from the feed."""

    def __init__(self, conn: Connection, msg: p.Subscribe) -> None:
        self.conn = conn
        self.feed = conn.sidecar.feed
        self.id = msg.id
        self.run_id = msg.run_id
        self.since = msg.since
        self.snapshot = msg.snapshot
        self.last_seq: dict[str, int] = dict(msg.after)
        if msg.run_id and msg.after_seq:
            self.last_seq[msg.run_id] = msg.after_seq
        self.live = False
        self.closed = False
        # Following the feed before the snapshot is read, so nothing falls between the two; and
        # the runs to replay are the ones live now, at the cursor: a run that ends before the
        # snapshot is read is still replayed (its events before the cursor are in no feed).
        self.cursor = self.feed.add(self)
        self.replay = [msg.run_id] if msg.run_id else list(conn.rt.runs)

    def _drop(self, reason: str) -> None:
        self.close()
        self.conn.subs.pop(self.id, None)
        self.conn.send(p.Dropped(sub=self.id, reason=reason, last_seq=dict(self.last_seq)))

    def _drop_behind(self) -> None:
        self._drop(f"fell more than {SUBSCRIBER_QUEUE} events behind; resubscribe with after")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.feed.remove(self)

    async def start(self) -> None:
        rt = self.conn.rt
        if self.snapshot:
            await rt.writer.wait_durable()
            for run_id in self.replay:
                await self._replay(run_id)
                if self.closed:
                    return
        self.live = True
        self.conn.send(p.Live(sub=self.id))

    async def _replay(self, run_id: str) -> None:
        path = self.conn.rt.layout.run_log(run_id)
        if not path.exists():
            return
        after = self.last_seq.get(run_id, 0)
        since = self.since
        lines = await trio.to_thread.run_sync(
            lambda: [(r.event.seq, r.line) for r in read_log(path, warn=False)
                     if r.event.seq > after and r.event.ts >= since]
        )
        for i in range(0, len(lines), BATCH):
            if self.closed:
                return
            chunk = lines[i : i + BATCH]
            await self.conn.send_when_room(
                p.EventFrame(sub=self.id, events=[msgspec.Raw(line) for _, line in chunk])
            )
            self.last_seq[run_id] = chunk[-1][0]

    def take_batch(self) -> bytes | None:
        """The next frame of live events (``BATCH`` at most): this subscription's run's (or
        all), at or after ``since``, and not already sent by the snapshot — cut from the log's
        own bytes, a run's stretch of a batch at a time."""
        if not self.live or self.closed:
            return None
        feed = self.feed
        head = feed.head
        if self.cursor >= head:
            return None
        if head - self.cursor >= SUBSCRIBER_QUEUE:
            self._drop_behind()
            return None
        spans = feed.spans(self.cursor, self.run_id, BATCH)
        taken = sum(j - i for _, i, j in spans)
        # All there was (of this run) up to the head, or BATCH of it.
        self.cursor = spans[-1][0].tickets[spans[-1][2] - 1] if taken >= BATCH else head
        last = self.last_seq
        since = self.since
        out = []
        for chunk, i, j in spans:
            events = chunk.events
            run_id = chunk.run_id
            # A run's events come in seq order: those the snapshot sent are the first of them.
            after = last.get(run_id, 0)
            while i < j and events[i].seq <= after:
                i += 1
            if i == j:
                continue
            if since:
                kept = [k for k in range(i, j) if events[k].ts >= since]
                if not kept:
                    continue
                out.extend(chunk.lines(k, k + 1) for k in kept)
                last[run_id] = events[kept[-1]].seq
            else:
                out.append(chunk.lines(i, j))
                last[run_id] = events[j - 1].seq
        if not out:
            return None
        # An EventFrame, assembled from the events' own bytes (cheaper than encoding Raws).
        return b'{"op":"events","sub":%d,"events":[%b]}' % (self.id, b",".join(out))


class SidecarAnswers:
    """The sidecar as a channel for asks: clients answer through ``AskBroker.answer``; this
    source only keeps the ask waiting for them instead of failing for want of a terminal."""

    name = "sidecar"

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    def available(self) -> bool:
        return True

    async def serve(self, ask: Any, broker: Any) -> None:
        await trio.sleep_forever()
