"""Security and robustness (issue 12, items 8-13): hostile sidecar clients, a hijacked socket
folder, a private store, symlinked blobs, a corrupt or locked index, and inputs that used to
end in a traceback. Real sockets, real files, real processes."""

from __future__ import annotations

import os
import stat

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, HandshakeError, wrap_client_stream

from aethergraph import graph_fn, tool
from aethergraph.runtime.sidecar import protocol as p
from aethergraph.runtime.sidecar import server as sidecar_server
from aethergraph.runtime.sidecar.client import SidecarClient, find_runtimes

from .conftest import ag, rt_open


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _tcp_addr(advert) -> tuple[str, int]:
    host, _, port = advert.tcp.rpartition(":")
    return host, int(port)


# -- 8. unauthenticated sidecar clients cannot exhaust the runtime ------------------------------


@tool(outputs=["n"])
async def count_lines(path: str):
    with open(path) as f:  # a tool that needs a file descriptor of its own
        return sum(1 for _ in f)


@graph_fn(name="uses_files")
async def uses_files(path: str, *, context):
    return await count_lines(path)


async def test_idle_tcp_clients_are_capped_and_closed_after_the_hello_deadline(home, tmp_path, monkeypatch):
    monkeypatch.setattr(sidecar_server, "HELLO_TIMEOUT", 1.0)
    monkeypatch.setattr(sidecar_server, "MAX_UNAUTHENTICATED", 8)
    data = tmp_path / "data.txt"
    data.write_text("a\nb\nc\n")
    async with rt_open(home, sidecar=True, tcp=True):
        (advert,) = find_runtimes(str(home))
        host, port = _tcp_addr(advert)
        # A first run opens what a process keeps for good (the store's owner-lock file).
        assert await uses_files(path=str(data)) == {"n": 3}
        before = open_fds()
        outcome: dict[int, str] = {}

        async def idle_client(i: int) -> None:
            stream = await trio.open_tcp_stream(host, port)
            try:
                # The websocket handshake, then silence: no hello, ever.
                await stream.send_all(_upgrade_request(host, port))
                got = await _read_until_closed(stream)
                outcome[i] = "closed" if got.startswith(b"HTTP/1.1 101") else "refused"
            finally:
                await stream.aclose()

        with trio.fail_after(20):
            async with trio.open_nursery() as clients:
                for i in range(24):
                    clients.start_soon(idle_client, i)
                await trio.testing.wait_all_tasks_blocked()
                # While they hang on: a run whose tool opens a file, and our own clients.
                assert await uses_files(path=str(data)) == {"n": 3}
                async with SidecarClient.connect(advert, client="owner") as c:
                    assert await c.list_runs() == []
        assert sorted(outcome) == list(range(24))
        assert list(outcome.values()).count("refused") >= 24 - 8, outcome
        # Every socket the server accepted is released.
        with trio.fail_after(10):
            while open_fds() > before:
                await trio.sleep(0.05)
        async with SidecarClient.connect(advert, prefer_tcp=True) as c:  # still serving TCP
            assert await c.list_asks() == []


def _upgrade_request(host: str, port: int) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    got = b""
    try:
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return got
            got += chunk
    except trio.BrokenResourceError:  # reset: the server closed with our bytes unread
        return got


async def test_a_huge_frame_before_hello_is_refused_without_buffering_it(home):
    async with rt_open(home, sidecar=True, tcp=True):
        (advert,) = find_runtimes(str(home))
        host, port = _tcp_addr(advert)
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(_upgrade_request(host, port))
        head = await stream.receive_some(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        # A binary frame that announces 4 MiB (masked with a zero key), of which only 256 KiB
        # ever arrive: a server that buffers frames before hello waits for the rest forever.
        header = b"\x82\xff" + (4 << 20).to_bytes(8, "big") + b"\0\0\0\0"
        with trio.fail_after(10):
            try:
                await stream.send_all(header + b"a" * (256 << 10))
            except trio.BrokenResourceError:
                pass  # already cut off
            reply = await _read_until_closed(stream)
        await stream.aclose()
        assert b"welcome" not in reply and b"too_large" not in reply
        async with SidecarClient.connect(advert, prefer_tcp=True) as c:
            assert await c.list_runs() == []


# -- 9. the fallback socket folder cannot be hijacked ------------------------------------------


@pytest.fixture
def long_home(tmp_path, monkeypatch):
    """A store whose socket path does not fit in sockaddr_un, with the temp dir of the test."""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    home = tmp_path / ("deep-" + "x" * 90) / "store"
    return home, tmp / f"aethergraph-{os.getuid()}"


async def test_fallback_socket_folder_is_created_private(long_home):
    home, folder = long_home
    async with rt_open(home, sidecar=True):
        (advert,) = find_runtimes(str(home))
        assert os.path.dirname(advert.unix) == str(folder)
        st = os.lstat(folder)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
        async with SidecarClient.connect(advert) as c:
            assert await c.list_runs() == []


async def test_dead_sockets_in_the_fallback_folder_are_swept_and_live_ones_kept(long_home):
    """Runtimes killed -9 leave their sockets in the shared folder; when their stores are gone
    nobody else would remove them. The next runtime that uses the folder removes those nobody
    listens on, and leaves a live one (and anything not named like a runtime's socket)."""
    import socket

    home, folder = long_home
    folder.mkdir(mode=0o700)
    dead = folder / "4242-dead00.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()  # bound, never unlinked: what kill -9 leaves
    live_path = folder / "4243-a11ve0.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(live_path))
    live.listen(1)
    other = folder / "notes.sock"
    other.write_text("not a runtime's")
    try:
        async with rt_open(home, sidecar=True):
            (advert,) = find_runtimes(str(home))
            assert sorted(os.listdir(folder)) == sorted(
                [os.path.basename(advert.unix), live_path.name, other.name])
            assert stat.S_IMODE(os.stat(advert.unix).st_mode) == 0o600
            async with SidecarClient.connect(advert) as c:
                assert await c.list_runs() == []
    finally:
        live.close()
    assert sorted(os.listdir(folder)) == sorted([live_path.name, other.name])


@pytest.mark.parametrize("planted", ["other_owner", "symlink", "open_mode"])
async def test_fallback_socket_folder_planted_by_someone_else_is_refused(long_home, tmp_path, planted):
    from aethergraph.runtime.sidecar.registry import SocketFolderError

    home, folder = long_home
    if planted == "other_owner":
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)  # nobody's
    elif planted == "symlink":
        target = tmp_path / "elsewhere"
        target.mkdir(mode=0o700)
        folder.symlink_to(target)
    else:
        folder.mkdir()
        os.chmod(folder, 0o777)
    with pytest.raises(SocketFolderError) as info:
        async with rt_open(home, sidecar=True):
            pass
    assert str(folder) in str(info.value)
    assert find_runtimes(str(home)) == []
    real = folder.resolve()
    assert not [f for f in os.listdir(real) if f.endswith(".sock")]  # nothing was put in it


def test_ag_run_refuses_a_hijacked_socket_folder_in_one_line(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    folder = tmp / f"aethergraph-{os.getuid()}"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    script = tmp_path / "g.py"
    script.write_text("from aethergraph import graph_fn\n@graph_fn(name='g')\nasync def g():\n    return 1\n")
    home = tmp_path / ("deep-" + "x" * 90) / "store"
    out = ag("run", f"{script}:g", "--home", str(home), env={"TMPDIR": str(tmp)}, cwd=tmp_path)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder) in lines[0] and "Traceback" not in out.stderr, out.stderr
    assert os.listdir(folder) == []


# -- 10. the store is private whatever the umask -----------------------------------------------


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def open_to_others(home) -> list[str]:
    """Everything under the store that group or others may read, enter or write."""
    found = []
    for root, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if mode & 0o077:
                found.append(f"{os.path.relpath(path, home)} {mode:o}")
    mode = stat.S_IMODE(os.stat(home).st_mode)
    if mode & 0o077:
        found.append(f". {mode:o}")
    return found


@graph_fn(name="writes_everything")
async def writes_everything(*, context):
    await context.memory().record("note", {"secret": "s3cret"})
    ref = await context.artifacts().write_text("a.txt", "private bytes")
    await context.kv().set("k", "v")
    return ref


async def test_every_store_file_and_folder_is_private_under_umask_022(home, umask_022):
    async with rt_open(home, sidecar=True, tcp=True, durability="strict") as rt:
        await writes_everything()
        (advert,) = find_runtimes(str(home))
        async with SidecarClient.connect(advert, prefer_tcp=True) as c:
            assert await c.list_runs() == []
        await rt.writer.wait_durable()
        assert open_to_others(home) == []  # while it runs: socket, token, advert, WAL files
    assert open_to_others(home) == []
    assert any(name.endswith(".jsonl") for _, _, files in os.walk(home) for name in files)
    assert any(len(name) == 64 for _, _, files in os.walk(home / "artifacts") for name in files)


def test_ag_commands_keep_the_store_private_under_umask_022(tmp_path, umask_022):
    script = tmp_path / "g.py"
    script.write_text("from aethergraph import graph_fn\n@graph_fn(name='g')\nasync def g(*, context):\n"
                      "    await context.memory().record('k', {'x': 1})\n    return 1\n")
    home = tmp_path / "store"
    for args in (["run", f"{script}:g"], ["index", "rebuild"], ["runs"], ["check"]):
        out = ag(*args, "--home", str(home), cwd=tmp_path)
        assert out.returncode == 0, out
    assert open_to_others(home) == []


# -- 11. blobs are never followed out of the store; export never writes through a link ---------


async def _one_artifact(home) -> str:
    async with rt_open(home, durability="strict"):
        return await writes_everything()


async def test_cat_refuses_a_symlink_planted_as_a_blob(home, layout, tmp_path):
    from aethergraph.runtime.errors import StoreError
    from aethergraph.runtime.store.artifacts import BlobStore, sha_from_ref

    ref = await _one_artifact(home)
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash\n")
    blob = BlobStore(layout).path_for(sha_from_ref(ref))
    blob.unlink()
    blob.symlink_to(secret)
    out = ag("artifacts", "cat", ref, "--home", str(home))
    assert out.returncode == 2 and "secret-hash" not in out.stdout, out
    assert len(out.stderr.strip().splitlines()) == 1 and "not a regular file" in out.stderr, out.stderr
    with pytest.raises(StoreError, match="not a regular file"):
        BlobStore(layout).read_bytes(sha_from_ref(ref))
    # A link one folder up (artifacts/ab -> elsewhere) is refused too.
    blob.unlink()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / blob.parent.name).mkdir(parents=True)
    (elsewhere / blob.parent.name / blob.name).write_text("root:$6$secret-hash\n")
    top = blob.parent.parent
    os.rename(top, tmp_path / "moved-away")
    top.symlink_to(elsewhere)
    out = ag("artifacts", "cat", ref, "--home", str(home))
    assert out.returncode == 2 and "secret-hash" not in out.stdout, out
    # `ag check` notices the planted link.
    out = ag("check", "--home", str(home))
    assert out.returncode == 1 and "not a regular file" in out.stdout, out


async def test_export_never_writes_through_a_link_or_over_a_file_without_force(home, tmp_path):
    ref = await _one_artifact(home)
    victim = tmp_path / "victim"
    link = tmp_path / "out.txt"
    link.symlink_to(victim)  # dangling: `exists()` says False
    out = ag("artifacts", "export", ref, str(link), "--home", str(home))
    assert out.returncode == 2 and "--force" in out.stderr and len(out.stderr.splitlines()) == 1, out
    assert not victim.exists() and link.is_symlink()
    out = ag("artifacts", "export", ref, str(link), "--home", str(home), "--force")
    assert out.returncode == 0, out
    assert not victim.exists()  # the link itself was replaced, nothing written through it
    assert not link.is_symlink() and link.read_text() == "private bytes"
    plain = tmp_path / "plain.txt"
    plain.write_text("mine")
    out = ag("artifacts", "export", ref, str(plain), "--home", str(home))
    assert out.returncode == 2 and plain.read_text() == "mine"
    fresh = tmp_path / "fresh.txt"
    assert ag("artifacts", "export", ref, str(fresh), "--home", str(home)).returncode == 0
    assert fresh.read_text() == "private bytes"


def test_orphan_parts_are_removed_when_a_runtime_opens_the_store(home, layout, tmp_path):
    import subprocess
    import sys
    import time

    layout.ensure()
    old = time.time() - 2 * 3600
    orphan = layout.tmp_dir / ("a" * 64 + ".999.1.part")
    orphan.write_bytes(b"half a blob")
    os.utime(orphan, (old, old))
    recent = layout.tmp_dir / ("b" * 64 + ".999.2.part")
    recent.write_bytes(b"being written")
    busy = layout.tmp_dir / ("c" * 64 + ".999.3.part")
    busy.write_bytes(b"a slow writer, still alive")
    os.utime(busy, (old, old))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'rb'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(busy)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"

        async def open_once():
            async with rt_open(home):
                pass

        trio.run(open_once)
        assert not orphan.exists()
        assert recent.exists() and busy.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


# -- 12. a bad index never blocks a command; a locked one says what it waits for ---------------


def _corrupt(layout, how: str) -> None:
    import sqlite3

    path = layout.index_path
    if how == "garbage":
        for suffix in ("-wal", "-shm"):
            if os.path.exists(f"{path}{suffix}"):
                os.unlink(f"{path}{suffix}")
        path.write_bytes(os.urandom(3000) + b"not an index")
        open(f"{path}-wal", "wb").write(b"junk wal")
        return
    c = sqlite3.connect(path, isolation_level=None)
    if how == "wrong_schema":
        c.execute("DROP TABLE runs")
        c.execute("CREATE TABLE runs(something TEXT, else_entirely INTEGER)")
    elif how == "missing_table":
        c.execute("DROP TABLE asks")
    c.close()


async def _a_finished_run(home) -> str:
    @graph_fn(name="small")
    async def small(*, context):
        await context.memory().record("note", {"x": 1})
        return context.run_id

    async with rt_open(home):
        return await small()


@pytest.mark.parametrize("how", ["garbage", "wrong_schema", "missing_table"])
@pytest.mark.parametrize("command", ["runs", "check", "index rebuild", "run"])
async def test_a_bad_index_is_set_aside_and_rebuilt(home, layout, tmp_path, how, command):
    import json

    run_id = await _a_finished_run(home)
    _corrupt(layout, how)
    if command == "run":
        script = tmp_path / "g.py"
        script.write_text("from aethergraph import graph_fn\n@graph_fn(name='g')\nasync def g():\n    return 1\n")
        args = ["run", f"{script}:g"]
    else:
        args = command.split()
    out = ag(*args, "--home", str(home))
    assert out.returncode == 0, out
    assert "Traceback" not in out.stderr
    warnings = [line for line in out.stderr.splitlines() if "set aside" in line]
    assert len(warnings) == 1, out.stderr
    aside = [f for f in os.listdir(home) if f.startswith("index.sqlite.corrupt-")]
    assert aside and all(f.split("-wal")[0] in aside for f in aside), aside
    runs = ag("runs", "--json", "--home", str(home))
    assert runs.returncode == 0 and "set aside" not in runs.stderr, runs
    assert run_id in [r["run_id"] for r in json.loads(runs.stdout)]
    check = ag("check", "--home", str(home))
    assert check.returncode == 0, check


def test_a_locked_index_says_what_it_waits_for(home, layout, tmp_path):
    import subprocess
    import sys

    from aethergraph.runtime.store.index import Index

    trio.run(_a_finished_run, home)
    for suffix in ("", "-wal", "-shm"):  # logs the index has never seen: ag runs must write
        if os.path.exists(f"{layout.index_path}{suffix}"):
            os.unlink(f"{layout.index_path}{suffix}")
    Index(layout).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
         " c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(3.5); c.execute('ROLLBACK')",
         str(layout.index_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        out = ag("runs", "--home", str(home))
    finally:
        holder.wait(timeout=30)
    assert out.returncode == 0, out
    notices = [line for line in out.stderr.splitlines() if "waiting for the index lock" in line]
    assert len(notices) == 1 and "another process" in notices[0], out.stderr
    assert "small" in out.stdout


def test_a_corrupt_kv_store_is_one_clear_line_and_left_untouched(home, layout, tmp_path):
    trio.run(_a_finished_run, home)
    garbage = os.urandom(5000)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{layout.kv_path}{suffix}"):
            os.unlink(f"{layout.kv_path}{suffix}")
    layout.kv_path.write_bytes(garbage)
    script = tmp_path / "g.py"
    script.write_text("from aethergraph import graph_fn\n@graph_fn(name='g')\nasync def g():\n    return 1\n")
    out = ag("run", f"{script}:g", "--home", str(home))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "kv store" in lines[0] and "move it away" in lines[0], out.stderr
    assert layout.kv_path.read_bytes() == garbage


# -- 13. one line and exit 2, never a traceback ------------------------------------------------


SMALL_GRAPH = (
    "from aethergraph import graph_fn\n@graph_fn(name='g')\nasync def g(n: int = 1, *, context):\n"
    "    for i in range(n):\n        await context.memory().record('k', {'i': i, 'pad': 'x' * 200})\n"
    "    return n\n"
)


def _one_line_usage_error(out, *words):
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ag: "), out.stderr
    for w in words:
        assert w in lines[0], out.stderr


def _ag_bytes(*args: bytes | str, cwd=None):
    """ag with raw bytes arguments (not valid UTF-8), as a shell would pass them."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "ag"
    return subprocess.run([str(exe), *args], capture_output=True, cwd=cwd, stdin=subprocess.DEVNULL,
                          timeout=60, env=dict(os.environ))


def test_bad_inputs_are_one_line_and_exit_2(tmp_path, home):
    import subprocess

    script = tmp_path / "g.py"
    script.write_text(SMALL_GRAPH)
    deep = '{"n": ' + "[" * 5000 + "]" * 5000 + "}"
    _one_line_usage_error(ag("run", f"{script}:g", "--input", deep), "--input", "nested")
    assert ag("run", f"{script}:g").returncode == 0  # a store to query
    for bad in (b'{"n": "\xff"}', b"\xff"):
        out = _ag_bytes("run", f"{script}:g", "--input", bad)
        out = subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(errors="replace"),
                                          out.stderr.decode(errors="replace"))
        _one_line_usage_error(out, "--input", "UTF-8")
    for args in (["--text", b"caf\xe9"], ["--kind", b"\xff"], ["--answer", b"\xfe"]):
        cmd = ["memory", "query", *args] if args[0] != "--answer" else ["run", f"{script}:g", *args]
        out = _ag_bytes(*cmd)
        out = subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(errors="replace"),
                                          out.stderr.decode(errors="replace"))
        _one_line_usage_error(out, args[0], "UTF-8")
    for since in ("1e400", "inf", "nan", "1e300", "99999999999w", "-1e300"):
        _one_line_usage_error(ag("memory", "query", f"--since={since}"), since)
        _one_line_usage_error(ag("memory", "query", f"--until={since}"), since)
    assert ag("memory", "query", "--since", "2h").returncode == 0


def _mount_tmpfs(where, size_kb: int) -> bool:
    import subprocess

    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                          capture_output=True)
    return done.returncode == 0


def _limit_file_size(kb: int):
    """A child whose files cannot grow past ``kb`` (EFBIG, like a full disk for it alone)."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (kb * 1024, kb * 1024))

    return limit


@pytest.mark.parametrize("full", ["tmpfs", "fsize"])
def test_a_full_disk_is_one_line_from_runs_check_and_run(tmp_path, full):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "g.py"
    script.write_text(SMALL_GRAPH)
    src = tmp_path / "src"
    for _ in range(3):
        assert ag("run", f"{script}:g", "--input", '{"n": 300}', "--home", str(src)).returncode == 0
    for f in os.listdir(src):
        if f.startswith("index.sqlite"):
            os.unlink(src / f)  # ag runs must index everything again, and has no room to
    logs_kb = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(src) for f in fs) // 1024
    exe = str(Path(sys.executable).parent / "ag")
    mnt = tmp_path / "mnt"
    if full == "tmpfs":
        if not _mount_tmpfs(mnt, logs_kb + 48):
            pytest.skip("cannot mount a tmpfs here")
        preexec = None
    else:
        mnt.mkdir()
        preexec = _limit_file_size(24)
    try:
        home = mnt / "store"
        shutil.copytree(src, home)

        def run(*args):
            return subprocess.run([exe, *args, "--home", str(home)], capture_output=True, text=True,
                                  timeout=120, preexec_fn=preexec, stdin=subprocess.DEVNULL)

        for args in (["runs"], ["check"]):
            _one_line_usage_error(run(*args), "full" if full == "tmpfs" else "I/O")
        # A strict run that cannot write its log ends, and says why in its last line.
        out = run("run", f"{script}:g", "--durability", "strict", "--input", '{"n": 20000}')
        assert out.returncode in (1, 2), out
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith(("ag: ", "run ")) and not last.startswith("Traceback"), out.stderr[-2000:]
    finally:
        if full == "tmpfs":
            subprocess.run(["umount", str(mnt)], check=False)


def test_the_name_cache_is_bounded_and_survives_a_failed_batch(home, layout):
    import sqlite3

    from aethergraph.runtime.store.index import Index

    @graph_fn(name="named")
    async def named(i: int, *, context):
        await context.memory().record(f"kind{i}", {"i": i}, tags=[f"tag{i}"])

    async def many():
        async with rt_open(home):
            for i in range(60):
                await named(i=i)

    trio.run(many)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{layout.index_path}{suffix}"):
            os.unlink(f"{layout.index_path}{suffix}")
    index = Index(layout)
    try:
        # A real SQLite failure in the middle of the first batch, after its names were interned.
        index._w.execute("CREATE TEMP TRIGGER boom BEFORE INSERT ON memory_tags"
                         " BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
            index.catch_up()
        index._w.execute("DROP TRIGGER boom")
        assert index.catch_up() > 0
        assert len(index._names) < 20  # not one entry per run, kind and tag ever seen
        for i in (0, 59):
            (hit,) = index.memory(kinds=[f"kind{i}"])
            assert hit.data == {"i": i} and index.memory(tags=[f"tag{i}"])[0].data == {"i": i}
    finally:
        index.close()


@pytest.mark.parametrize("command", ["runs", "check", "memory query"])
async def test_a_damaged_page_found_while_reading_sets_the_index_aside(home, layout, command):
    import sqlite3

    run_id = await _a_finished_run(home)
    c = sqlite3.connect(layout.index_path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (root,) = c.execute("SELECT rootpage FROM sqlite_master WHERE name='runs'").fetchone()
    (memory_root,) = c.execute("SELECT rootpage FROM sqlite_master WHERE name='memory'").fetchone()
    (page,) = c.execute("PRAGMA page_size").fetchone()
    c.close()
    with open(layout.index_path, "r+b") as f:  # opening sees nothing wrong; reading does
        for r in (root, memory_root):
            f.seek((r - 1) * page)
            f.write(b"\xff" * page)
    out = ag(*command.split(), "--home", str(home))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out
    assert len([line for line in out.stderr.splitlines() if "set aside" in line]) == 1, out.stderr
    if command == "runs":
        assert run_id in out.stdout
    if command == "memory query":
        assert "note" in out.stdout


@pytest.mark.parametrize("fails", ["advert", "token"])
async def test_a_sidecar_that_cannot_start_leaves_nothing_in_the_store(home, layout, monkeypatch, fails):
    """The fd table full (EMFILE) when the advert or the TCP token is written: the runtime
    refuses to start, and leaves no socket, token or half-written advert that no advert names
    (before, its socket stayed in ``runtimes/`` for good: nothing removes a socket by itself)."""
    import errno

    real_open = os.open

    def emfile_for(suffix):
        def opener(path, flags, mode=0o777, *a, **kw):
            if str(path).endswith(suffix):
                raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), str(path))
            return real_open(path, flags, mode, *a, **kw)
        return opener

    monkeypatch.setattr(os, "open", emfile_for(".json.tmp" if fails == "advert" else ".token"))
    with pytest.raises(OSError) as info:
        async with rt_open(home, sidecar=True, tcp=True):
            pass
    assert info.value.errno == errno.EMFILE
    assert sorted(os.listdir(layout.runtimes_dir)) == []
