"""``ag web`` for real: the server as a child process on loopback, its token, its sessions
(each an ``ag tui`` process of its own), how it stops; and the dashboard in a real browser
(headless Chromium driven by Selenium) answering a live run's ask by keys.

The browser test is skipped (saying so) only when Chromium, its driver or Selenium is missing;
``.ci/run`` installs them. Everything is polled with deadlines; nothing sleeps unbounded.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .agproc import start_ag, wait_until
from .conftest import ag

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

GRAPH = '''
from aethergraph import NodeContext, graph_fn


@graph_fn(name="greet")
async def greet(*, context: NodeContext) -> dict:
    name = await context.channel().ask_text("What name shall I greet?")
    return {"greeting": f"hello {name}"}
'''


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a zombie has exited; it only awaits reaping)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class AgWeb:
    """``ag web --port 0`` in a child process; its output in files, its URL parsed from them."""

    def __init__(self, tmp_path: Path, home: Path, name: str = "web") -> None:
        self.out_path = tmp_path / f"{name}.out"
        self.err_path = tmp_path / f"{name}.err"
        self.proc = start_ag("web", "--port", "0", "--home", str(home), cwd=tmp_path,
                             stdout=self.out_path.open("w"), stderr=self.err_path.open("w"))
        line = wait_until(lambda: self._url_line(), "ag web to print its URL")
        self.url = line
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]+)", line)
        assert m, line
        self.port, self.token = int(m[1]), m[2]

    def _url_line(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"ag web exited {self.proc.returncode}: {self.output()}")
        m = re.search(r"^ag web: open (\S+)$", self.out_path.read_text(), re.M)
        return m[1] if m else None

    def output(self) -> str:
        return self.out_path.read_text() + self.err_path.read_text()

    def request(self, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.body = resp.read()
        conn.close()
        return resp

    def session_pids(self, n: int) -> list[int]:
        def found():
            pids = [int(p) for p in re.findall(r"opened \(ag tui pid (\d+)\)", self.err_path.read_text())]
            return pids if len(pids) >= n else None
        return wait_until(found, f"{n} session(s) in ag web's output")

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture
def server(tmp_path, home):
    web = AgWeb(tmp_path, home)
    yield web
    web.stop()


def test_every_request_needs_the_token(server, tmp_path, home):
    """No token, a wrong one, another store's: 403 on the page, static files and the websocket
    upgrade. The right one once: a cookie (HttpOnly, SameSite=Strict) and a redirect to a URL
    without it; then the cookie alone lets the page, its files and the websocket in."""
    other_home = tmp_path / "other-store"
    from aethergraph.web.auth import load_or_create

    other_token, how = load_or_create(other_home)
    assert how == "new" and other_token != server.token
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    cookie_name = f"ag_web_{server.port}"
    for token in (None, "wrong", server.token[:-1], server.token + "x", other_token):
        query = "" if token is None else f"?token={token}"
        for path in ("/", "/static/js/textual.js", "/ws", "/nothing-here"):
            assert server.request(path + query).status == 403, (path, token)
        assert server.request("/ws" + query, upgrade).status == 403
        if token is not None:
            assert server.request("/", {"Cookie": f"{cookie_name}={token}"}).status == 403
    refused = server.request("/")
    assert b"403 Forbidden" in refused.body and b"web.token" in refused.body

    first = server.request(f"/?token={server.token}")
    assert first.status == 303 and first.getheader("Location") == "/"
    cookie = first.getheader("Set-Cookie")
    assert cookie.startswith(f"{cookie_name}={server.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": f"{cookie_name}={server.token}"}
    page = server.request("/", jar)
    assert page.status == 200 and page.getheader("Referrer-Policy") == "no-referrer"
    assert b'data-session-websocket-url="ws://127.0.0.1:%d/ws"' % server.port in page.body
    assert server.token.encode() not in page.body  # the page never carries the token
    assert server.request("/static/js/textual.js", jar).status == 200
    # The websocket from a page of another origin: refused even with the cookie.
    assert server.request("/ws", {**jar, **upgrade, "Origin": "http://evil.example"}).status == 403

    # The token file: 0600 in the store, the same token after a restart.
    path = home / "web.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == server.token
    assert server.stop() == 0
    again = AgWeb(tmp_path, home, name="again")
    try:
        assert again.token == server.token
    finally:
        again.stop()
    # Nothing but the one "open" line ever shows the token: no access log, no refused URL.
    for web in (server, again):
        assert web.output().count(web.token) == 1, web.output()
    assert "ag web: refused GET /static/js/textual.js from 127.0.0.1: a wrong token" in server.output()


def test_a_strangers_path_cannot_write_to_the_servers_terminal(server):
    """Refusals are reported with their path: a path with an escape sequence in it is shown
    escaped, never passed to the terminal as is."""
    assert server.request("/%1b]0;pwned%07%1b[2J").status == 403
    wait_until(lambda: "pwned" in server.err_path.read_text(), "the refusal to be reported")
    err = server.err_path.read_text()
    assert "\x1b" not in err and "\x07" not in err
    assert "ag web: refused GET /%1b]0;pwned%07%1b[2J from 127.0.0.1: no token" in err


def test_browser_messages_are_decoded_strictly():
    from aethergraph.web import protocol as p

    assert p.from_browser('["stdin", "?"]') == p.Stdin("?")
    assert p.from_browser('["resize", {"width": 120, "height": 40}]') == p.Resize(p.Size(120, 40))
    assert p.from_browser('["focus"]') == p.Focus() and p.from_browser('["blur"]') == p.Blur()
    for junk in ("", "null", "{}", '["stdin"]', '["stdin", 1]', '["resize", {"width": 0, "height": 1}]',
                 '["resize", {"width": 1001, "height": 1}]', '["exec", "rm"]', b"\xff"):
        assert p.from_browser(junk) is None, junk
    assert p.meta_packet(p.Meta("quit")) == b'M\x00\x00\x00\x0f{"type":"quit"}'
    assert p.app_meta_type(b'{"type": "exit"}') == "exit" and p.app_meta_type(b"[") == ""


def test_a_token_file_others_could_read_is_replaced(tmp_path, home):
    from aethergraph.web.auth import load_or_create

    old, _ = load_or_create(home)
    os.chmod(home / "web.token", 0o644)
    new, how = load_or_create(home)
    assert new != old and how.startswith("replaced (it was readable by others")
    assert stat.S_IMODE((home / "web.token").stat().st_mode) == 0o600
    assert load_or_create(home) == (new, "kept")


async def _open_sessions(web: AgWeb, n: int):
    import aiohttp

    session = aiohttp.ClientSession(cookies={f"ag_web_{web.port}": web.token})
    sockets = [await session.ws_connect(f"http://127.0.0.1:{web.port}/ws?width=100&height=30")
               for _ in range(n)]
    for ws in sockets:  # the dashboard draws: its screen arrives as binary messages
        msg = await asyncio.wait_for(ws.receive(), 30)
        assert msg.type.name == "BINARY", msg
    return session, sockets


def test_sessions_one_per_tab_end_with_the_tab_and_with_the_server(server):
    """Each websocket is an ``ag tui`` of its own; closing one ends only that one; Ctrl-C ends
    the rest cleanly (exit 0, not killed) and leaves no process behind."""

    async def scenario():
        session, (ws1, ws2, ws3) = await _open_sessions(server, 3)
        pids = server.session_pids(3)
        assert len(set(pids)) == 3 and all(alive(p) for p in pids)
        await ws1.close()  # a tab closed
        await asyncio.to_thread(wait_until, lambda: "session 1 closed (exit 0); 2 open"
                                in server.err_path.read_text(), "session 1 to end")
        assert not alive(pids[0])
        assert alive(pids[1]) and alive(pids[2])
        # Whatever a browser sends that is not textual.js's protocol is dropped; the tab lives.
        for junk in ("not json", "{}", "[]", '["stdin"]', '["resize", {"width": -1, "height": 5}]',
                     '["stdin", 5]', '["ping", "' + "x" * 100 + '"]', '["quit"]'):
            await ws2.send_str(junk)
        await ws2.send_bytes(b"\xff\x00")
        await ws2.send_str('["ping", "after the junk"]')
        msg = await asyncio.wait_for(ws2.receive(), 10)
        while msg.type.name == "BINARY":
            msg = await asyncio.wait_for(ws2.receive(), 10)
        assert msg.json() == ["pong", "after the junk"]
        assert alive(pids[1])
        assert server.stop(signal.SIGINT) == 0  # Ctrl-C, with two tabs open
        for ws in (ws2, ws3):  # the server closed their sockets (after the screens' last bytes)
            msg = await asyncio.wait_for(ws.receive(), 10)
            while msg.type.name == "BINARY":
                msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type.name in ("CLOSE", "CLOSED", "CLOSING"), msg
            await ws.close()
        await session.close()
        return pids

    pids = asyncio.run(scenario())
    assert not any(alive(p) for p in pids)
    err = server.err_path.read_text()
    assert "stopping; ending 2 sessions" in err
    assert "session 2 closed (exit 0)" in err and "session 3 closed (exit 0)" in err
    assert "SIGTERM" not in err and "SIGKILL" not in err
    assert err.rstrip().endswith("ag web: stopped")


def test_stopping_while_a_tab_is_opening_ends_that_tab_too(tmp_path, home):
    """The server in this process (real aiohttp on loopback, real ag tui children): the stop
    comes while a websocket handler is between its handshake and its session. Before the fix
    the stop ended the sessions it knew of and returned, and that one was left running."""
    import aiohttp
    from aiohttp import web

    from aethergraph.web.auth import load_or_create
    from aethergraph.web.server import WebServer

    token, _ = load_or_create(home)
    said: list[str] = []

    async def scenario():
        server = WebServer(home, token, 0, said.append)
        runner = web.AppRunner(server.make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server.port = runner.addresses[0][1]
        async with aiohttp.ClientSession(cookies={server.cookie: token}) as client:
            opening = asyncio.create_task(client.ws_connect(f"http://127.0.0.1:{server.port}/ws"))
            while not (server._handlers == 1 and not server.sessions):
                await asyncio.sleep(0)  # until the handler is inside, its session not yet known
            await server.stop_sessions()
            assert not server.sessions and server._handlers == 0
            ws = await opening
            await ws.close()
        await runner.cleanup()

    asyncio.run(scenario())
    opened = [line for line in said if " opened " in line]
    assert len(opened) == 1 and "session 1 closed (exit 0); 0 open" in said, said
    pid = int(re.search(r"pid (\d+)", opened[0])[1])
    assert not alive(pid)


def test_a_killed_server_leaves_no_dashboard_behind(server):
    """SIGKILL gives the server no chance to end its sessions: each dashboard asked Linux to
    signal it when its server dies, and exits."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux's")

    async def scenario():
        session, sockets = await _open_sessions(server, 2)
        pids = server.session_pids(2)
        server.stop(signal.SIGKILL)
        await asyncio.to_thread(wait_until, lambda: not any(alive(p) for p in pids),
                                "the dashboards to exit after their server was killed")
        for ws in sockets:
            await ws.close()
        await session.close()

    asyncio.run(scenario())


def test_bad_arguments_are_one_line(tmp_path, server):
    busy = ag("web", "--port", str(server.port), "--home", str(tmp_path / "s2"))
    assert busy.returncode == 2
    assert busy.stderr.strip() == (f"ag: port {server.port} on 127.0.0.1 is in use (another ag web?); "
                                   "choose another with --port")
    bad = ag("web", "--port", "70000")
    assert bad.returncode == 2 and "a port is 0-65535, got 70000" in bad.stderr
    # 192.0.2.1: an address for documentation (RFC 5737), never one of this machine's.
    away = ag("web", "--host", "192.0.2.1", "--port", "0", "--home", str(tmp_path / "s3"))
    assert away.returncode == 2
    assert away.stderr.splitlines() == [
        "ag web: warning: listening on 192.0.2.1, not loopback: anyone who can reach this port "
        "and has the token sees the dashboard, over plain HTTP (an SSH tunnel to 127.0.0.1 is "
        "the safer way)",
        "ag: --host 192.0.2.1 is not an address of this machine"]


# -- in a real browser ----------------------------------------------------------------------------

# Chromium shows the page's terminal (xterm.js) on a canvas; its text is in the xterm.js object,
# which textual.js keeps to itself. This script, run before any of the page's own, remembers
# every object that gets a ``_core`` (xterm's Terminal sets one in its constructor) so that the
# test can read the screen from the terminal's buffer.
_HOOK = """
Object.defineProperty(Object.prototype, '_core', {configurable: true,
  get() { return undefined; },
  set(v) {
    Object.defineProperty(this, '_core', {value: v, writable: true, configurable: true, enumerable: true});
    (window.__agTerminals = window.__agTerminals || []).push(this);
  }});
"""
_SCREEN = """
const t = (window.__agTerminals || []).find(t => t.buffer && t.buffer.active && t.rows);
if (!t) return null;
const lines = [];
for (let i = 0; i < t.rows; i++) {
  const line = t.buffer.active.getLine(t.buffer.active.viewportY + i);
  lines.push(line ? line.translateToString(true) : '');
}
return lines.join('\\n');
"""


class Browser:
    def __init__(self, tmp_path: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        self.profile = tempfile.mkdtemp(prefix="ag-web-chromium-", dir=tmp_path)
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={self.profile}",
                     "--window-size=1200,700"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self._hook()

    def _hook(self) -> None:
        """The hook goes to the current tab only: once per tab, before it loads a page."""
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _HOOK})

    def new_tab(self, url: str) -> None:
        self.driver.switch_to.new_window("tab")
        self._hook()
        self.driver.get(url)

    def screen(self) -> str:
        return self.driver.execute_script(_SCREEN) or ""

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        try:
            wait_until(lambda: text in self.screen(), f"{text!r} on the page", timeout, every=0.1)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {text!r}; the page shows:\n{self.screen()}") from None
        return self.screen()

    def keys(self, keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(keys).perform()

    def quit(self) -> None:
        self.driver.quit()


def _browser_missing() -> str | None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "chromium or chromedriver is not installed (.ci/run installs them with apt-get)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_dashboard_in_a_browser_answers_a_live_runs_ask(server, tmp_path, home):
    from selenium.webdriver.common.keys import Keys

    (tmp_path / "greet.py").write_text(GRAPH)
    env = {"AETHERGRAPH_HOME": str(home), "TZ": "UTC"}
    browser = Browser(tmp_path)
    run = None
    try:
        # Without the token: refused, and the page says why.
        base = f"http://127.0.0.1:{server.port}/"
        browser.driver.get(base)
        assert "403 Forbidden" in browser.driver.page_source
        assert browser.screen() == ""

        browser.driver.get(server.url)
        assert browser.driver.current_url == base  # the token left the address bar
        first = browser.wait_for("1 Runs")
        assert "RUN" in first and "STATUS" in first  # the runs table's header
        assert "Every run in the store" not in first
        browser.keys("?")  # no click first: the page gave the terminal the keyboard
        help_screen = browser.wait_for("Every run in the store")
        assert "Runs panel" in help_screen
        browser.keys(Keys.ESCAPE)
        wait_until(lambda: "Every run in the store" not in browser.screen(), "help to close")

        run = start_ag("run", "greet.py:greet", "--json", cwd=tmp_path, env=env)
        browser.wait_for("Asks [1]")  # the badge, seen from the Runs panel
        # The run's row: "greet" alone would also match the new-ask toast ("…shall I greet?"),
        # which can be on screen a frame before the row is drawn.
        def run_row() -> bool:
            return any("greet" in line and ("RUNNING" in line or "WAITING" in line)
                       for line in browser.screen().splitlines())

        wait_until(run_row, "the run's row (greet, RUNNING or WAITING) in the runs table", 30, every=0.1)
        ARTIFACTS.mkdir(exist_ok=True)  # for people to look at: a live run waiting for its answer
        shot = ARTIFACTS / "web-dashboard.png"
        assert browser.driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        # A second tab is a second dashboard (the cookie lets it in); closing it ends that
        # dashboard only: the run goes on waiting, the first tab goes on showing it.
        first_tab = browser.driver.current_window_handle
        browser.new_tab(base)
        browser.wait_for("Asks [1]")  # this dashboard attached to the live runtime too
        browser.wait_for("greet")
        browser.driver.close()
        browser.driver.switch_to.window(first_tab)
        wait_until(lambda: "session 2 closed (exit 0); 1 open" in server.err_path.read_text(),
                   "the second tab's dashboard to end")
        assert run.poll() is None and "Asks [1]" in browser.screen()
        browser.keys("3")
        browser.wait_for("What name shall I greet?")
        browser.keys(Keys.ENTER)
        browser.wait_for("TEXT ASK")
        browser.keys("web tab")
        browser.wait_for("web tab")  # in the answer's field before enter sends it
        browser.keys(Keys.ENTER)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        browser.wait_for("Asks [0]")
        browser.keys("1")
        done = browser.wait_for("SUCCEEDED")
        assert "greet" in done
    finally:
        browser.quit()
        if run is not None and run.poll() is None:
            run.kill()
            run.wait()
    outcome = json.loads(out.splitlines()[-1])  # after the console's lines: the outcome
    runs = json.loads(ag("runs", "--json", env=env).stdout)
    assert [(r["run_id"], r["status"]) for r in runs] == [(outcome["run_id"], "succeeded")]
    shown = json.loads(ag("show", outcome["run_id"], "--json", env=env).stdout)
    answers = [(e["answer"], e["by"]) for e in shown["events"] if e["type"] == "ask_answered"]
    assert answers == [("web tab", "ag tui (sidecar)")]
    assert outcome["outputs"] == {"greeting": "hello web tab"}, outcome
    # The tab closed with the browser: its session ended, the run was not disturbed (it
    # had already finished by itself), and the server is still serving.
    wait_until(lambda: "session 1 closed (exit 0); 0 open" in server.err_path.read_text(),
               "the browser's session to end")
    assert server.output().count(server.token) == 1
