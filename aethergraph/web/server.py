"""The ``ag web`` server: aiohttp on asyncio, a process apart from every trio runtime.

- Every request, the websocket upgrade included, passes ``_guard`` first: the token as
  ``?token=`` (once: the answer sets an HttpOnly, SameSite=Strict cookie and redirects to a URL
  without it, so it leaves the address bar and the history) or that cookie; compared in
  constant time. Anything else gets 403.
- Each websocket is one browser tab and gets its own ``ag tui`` (``python -m aethergraph.web``)
  speaking Textual's web-driver protocol on its stdin/stdout. Closing the tab ends that
  process only: a dashboard only looks at runs (through their runtimes' sidecars), so no run
  notices.
- Stopping (Ctrl-C, SIGTERM) refuses new sessions, asks every dashboard to quit, and
  terminates (then kills) any that has not within a few seconds, before it returns.
- No access log: aiohttp's would print every URL, token and all. Refusals are reported with
  their path only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import attrs
import textual_serve
from aiohttp import WSMsgType, web

from . import protocol as p
from .auth import same_token
from .page import REFUSED, dashboard_page

QUIT_GRACE_S = 5.0  # a dashboard asked to quit ends its trio side first; then SIGTERM, SIGKILL


def _static_dir() -> Path:
    """textual-serve's browser half: textual.js (xterm.js + the protocol's client) and CSS."""
    return Path(textual_serve.__file__).parent / "static"


def printable(text: str, limit: int = 300) -> str:
    """Untrusted text (a path a stranger sent, a line a dashboard printed) made safe for our
    terminal: control characters (escape sequences above all) shown as escapes, and cut short."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _size(query, name: str, default: int) -> int:
    try:
        return min(max(int(query.get(name, default)), 10), 1000)
    except ValueError:
        return default


@attrs.define(eq=False)
class Session:
    """One tab's ``ag tui`` process and the websocket it draws on."""

    number: int
    process: asyncio.subprocess.Process
    say: Callable[[str], None]
    _stdin_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    async def send(self, packet: bytes) -> None:
        stdin = self.process.stdin
        if stdin is None or stdin.is_closing():
            return
        async with self._stdin_lock:
            try:
                stdin.write(packet)
                await stdin.drain()
            except (ConnectionError, RuntimeError):
                pass  # the app has gone; its output pump notices and closes the socket

    async def meta(self, meta: p.Meta) -> None:
        await self.send(p.meta_packet(meta))

    async def pump_output(self, ws: web.WebSocketResponse) -> None:
        """The app's screen to the browser, until the app exits; then close the socket."""
        out = self.process.stdout
        assert out is not None
        try:
            for _ in range(100):  # anything before the prelude is not the driver's
                line = await out.readline()
                if not line or line == p.PRELUDE:
                    break
            if line == p.PRELUDE:
                while True:
                    head = await out.readexactly(5)
                    size = int.from_bytes(head[1:], "big")
                    if size > p.MAX_PACKET:
                        self.say(f"session {self.number}: a {size}-byte packet; ending it")
                        break
                    payload = await out.readexactly(size)
                    if head[:1] == b"D":
                        await ws.send_bytes(payload)
                    elif head[:1] == b"M" and p.app_meta_type(payload) == "exit":
                        break
                    # "P" (files delivered to the browser): the dashboard offers none
            else:
                self.say(f"session {self.number}: the dashboard did not start")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await ws.close()

    async def forward_stderr(self) -> None:
        """What the dashboard prints on stderr (a traceback, a warning) goes to our stderr."""
        err = self.process.stderr
        assert err is not None
        async for line in err:
            self.say(f"session {self.number}: {printable(line.decode('utf-8', 'replace').rstrip())}")

    async def handle(self, ws: web.WebSocketResponse, msg) -> None:
        """One message from the browser (untrusted: anything malformed is dropped)."""
        if msg.type != WSMsgType.TEXT:
            return
        match p.from_browser(msg.data):
            case p.Stdin(data):
                await self.send(p.packet(b"D", data.encode("utf-8", "replace")))
            case p.Resize(size):
                await self.meta(p.Meta("resize", size.width, size.height))
            case p.Ping(stamp):
                await ws.send_json(["pong", stamp])
            case p.Focus():
                await self.meta(p.Meta("focus"))
            case p.Blur():
                await self.meta(p.Meta("blur"))

    async def close(self) -> int:
        """Ask the app to quit; SIGTERM, then SIGKILL, if it does not. Its exit status."""
        proc = self.process
        if proc.returncode is None:
            await self.meta(p.Meta("quit"))
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and proc.returncode is None:
                    self.say(f"session {self.number}: no exit within {QUIT_GRACE_S:g} s; "
                             f"sending {sig.name}")
                    proc.send_signal(sig)
                try:
                    await asyncio.wait_for(proc.wait(), QUIT_GRACE_S)
                    break
                except TimeoutError:
                    continue
        if proc.stdin is not None:
            proc.stdin.close()
        return await proc.wait()


@attrs.define(eq=False)
class WebServer:
    """The aiohttp application: guard, page, static files, one session per websocket."""

    home: Path
    token: str = attrs.field(repr=False)  # never in a repr, a traceback, a log
    port: int
    say: Callable[[str], None]
    sessions: set[Session] = attrs.field(factory=set)
    closing: bool = False
    _count: int = 0
    _handlers: int = 0  # websocket handlers running, from before their session starts
    _idle: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def cookie(self) -> str:
        return f"ag_web_{self.port}"  # per port: two servers on one host keep their cookies apart

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.add_routes([
            web.get("/", self._index),
            web.get("/ws", self._websocket),
            web.static("/static", _static_dir(), show_index=False, follow_symlinks=False),
        ])
        app.on_response_prepare.append(self._headers)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        given = request.query.get("token")
        by_query = same_token(given, self.token)
        if not (by_query or same_token(request.cookies.get(self.cookie), self.token)):
            self.say(f"refused {printable(request.method)} {printable(request.rel_url.raw_path)} "
                     f"from {request.remote}: "
                     f"{'a wrong token' if given or self.cookie in request.cookies else 'no token'}")
            return web.Response(status=403, text=REFUSED, content_type="text/html")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and not self._same_origin(request):
            self.say(f"refused a websocket from origin {printable(request.headers.get('Origin', ''))!r}")
            return web.Response(status=403, text=REFUSED, content_type="text/html")
        if by_query and request.method == "GET" and request.path == "/" and not upgrade:
            answer = web.HTTPSeeOther(location="/")
            answer.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict",
                              path="/", secure=request.secure)
            return answer
        return await handler(request)

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """A browser names the page that opens a websocket; only our own page may."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser (a browser always sends Origin on websockets)
        scheme = "https" if request.secure else "http"
        return origin == f"{scheme}://{request.host}"

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"

    async def _index(self, request: web.Request) -> web.Response:
        scheme = "wss" if request.secure else "ws"
        page = dashboard_page(ws_url=f"{scheme}://{request.host}/ws",
                              title=f"AetherGraph · {self.home}", font_size=16)
        return web.Response(text=page, content_type="text/html")

    async def _spawn(self, width: int, height: int) -> Session:
        env = dict(os.environ)
        env.pop("AETHERGRAPH_HOME", None)  # --home says which store, whatever the environment
        for name in ("LINES", "COLUMNS", "ROWS"):
            env.pop(name, None)
        env.update({
            "TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver",
            "TEXTUAL_COLOR_SYSTEM": "truecolor",
            "TERM_PROGRAM": "textual",
            "COLUMNS": str(width),
            "ROWS": str(height),
        })
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aethergraph.web", "--parent", str(os.getpid()),
            "--home", str(self.home),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
            start_new_session=True,  # Ctrl-C at our terminal is ours to pass on, in order
        )
        self._count += 1
        return Session(self._count, process, self.say)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.closing:
            return web.Response(status=503, text="ag web is stopping")
        self._handlers += 1
        self._idle.clear()
        try:
            return await self._session(request)
        finally:
            self._handlers -= 1
            if self._handlers == 0:
                self._idle.set()

    async def _session(self, request: web.Request) -> web.StreamResponse:
        # timeout: how long a close waits for the browser to answer it (a gone tab never does)
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20, timeout=2.0)
        await ws.prepare(request)
        session = await self._spawn(_size(request.query, "width", 80),
                                    _size(request.query, "height", 24))
        self.sessions.add(session)
        self.say(f"session {session.number} opened (ag tui pid {session.process.pid}); "
                 f"{len(self.sessions)} open")
        tasks = [asyncio.create_task(session.pump_output(ws)),
                 asyncio.create_task(session.forward_stderr())]
        try:
            if not self.closing:  # stopping began while this one started: end it at once
                async for msg in ws:
                    await session.handle(ws, msg)
        finally:
            code = await asyncio.shield(session.close())
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()
            self.sessions.discard(session)
            self.say(f"session {session.number} closed (exit {code}); {len(self.sessions)} open")
        return ws

    async def stop_sessions(self) -> None:
        """Refuse new sessions, end every one (those still starting too), wait for them all."""
        self.closing = True
        await asyncio.gather(*(s.close() for s in list(self.sessions)), return_exceptions=True)
        if self._handlers:
            await self._idle.wait()


def _url_host(host: str) -> str:
    """The host part of the URL to print: listening on every address, this machine's name."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"[{host}]" if ":" in host else host


async def serve(home: Path, token: str, host: str, port: int, out: TextIO, err: TextIO) -> int:
    """Serve until SIGINT/SIGTERM; then end every session and return 0."""

    def say(line: str) -> None:
        print(f"ag web: {line}", file=err, flush=True)

    server = WebServer(home, token, port, say)
    runner = web.AppRunner(server.make_app(), access_log=None, handle_signals=False,
                           shutdown_timeout=QUIT_GRACE_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server.port = runner.addresses[0][1]  # the real one when asked for port 0
        base = f"http://{_url_host(host)}:{server.port}/"
        print(f"ag web: the dashboard of {home} on {base}\n"
              f"ag web: open {base}?token={token}\n"
              f"ag web: (the token is kept in {home / 'web.token'}; Ctrl-C stops)",
              file=out, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        n = len(server.sessions)
        say(f"stopping; ending {n} session{'s' * (n != 1)}")
        await server.stop_sessions()
    finally:
        await runner.cleanup()
    say("stopped")
    return 0
