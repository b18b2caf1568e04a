"""Other processes for tests (and benchmarks): the real ``ag`` started as a child, waiting on
what another process does, and a terminal of our own (tmux, an sshd on loopback).

Why one module: every test that starts ``ag`` needs the same four things (which executable,
the store in its environment, pipes, a deadline on each wait), and the copies had started to
drift in their timeouts and error messages. bench/ imports this module too (B11 measures
``ag tui`` in tmux and over SSH the way tests/test_tui_tmux.py drives it), so nothing here
imports pytest.

Waits on other processes poll with deadlines: no trio clock can jump across processes.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

TMUX = shutil.which("tmux")
SSH = shutil.which("ssh")
SSHD = shutil.which("sshd") or next(
    (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None)


def ag_cmd() -> list[str]:
    """The real ``ag`` console script beside this interpreter (``python -m`` when it is not installed)."""
    exe = Path(sys.executable).parent / "ag"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "aethergraph.cli.main"]


def ag_shell() -> str:
    """``ag`` as a shell command line, for a terminal (tmux, ssh) to run."""
    return shlex.join(ag_cmd())


def start_ag(*args: str, cwd: Path | str | None = None, env: dict | None = None,
             stdin: Any = subprocess.DEVNULL, stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE,
             text: bool = True, **popen: Any) -> subprocess.Popen:
    """``ag *args`` in a child process, running on its own: stdin closed, output piped as text,
    ``env`` laid over this process's environment."""
    return subprocess.Popen([*ag_cmd(), *args], cwd=cwd, env={**os.environ, **(env or {})}, stdin=stdin,
                            stdout=stdout, stderr=stderr, text=text, **popen)


@contextmanager
def terminal(folder: Path, ssh: bool = False) -> Iterator[tuple[Tmux, Sshd | None]]:
    """A tmux of our own and, given ``ssh``, an sshd to log in through; both stopped after the
    block. With ``ssh`` it then checks that a key login really happened (a dashboard said to be
    on the far side of SSH was)."""
    sshd = Sshd(folder) if ssh else None
    tmux = Tmux(folder)
    try:
        yield tmux, sshd
    finally:
        tmux.kill()
        if sshd is not None:
            sshd.stop()
    if sshd is not None:
        assert "Accepted publickey" in sshd.log.read_text(), sshd.log.read_text()


def tui_command(folder: Path, home: Path, sshd: Sshd | None = None) -> str:
    """``ag tui`` as a terminal's shell runs it: in ``folder``, on the store ``home``, times in
    UTC, its exit code written to ``folder/tui.rc``; through an SSH login when ``sshd`` is given
    (with the far side's TERM a desktop terminal's)."""
    # COLUMNS/LINES, when a shell exported them, would pin the app to a stale size.
    cmd = f"cd {folder} && env -u COLUMNS -u LINES AETHERGRAPH_HOME={home} TZ=UTC {ag_shell()} tui; echo $? > {folder}/tui.rc"
    return sshd.command(f"export TERM=xterm-256color; {cmd}") if sshd else cmd


def polls(what: str, timeout: float) -> Iterator[None]:
    """One turn per look until ``timeout`` seconds have passed; then fail naming ``what``.
    (The caller looks, leaves the loop when it sees what it waits for, and pauses in between.)"""
    deadline = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")


def wait_until(predicate: Callable[[], T], what: str = "condition", timeout: float = 30.0,
               every: float = 0.1) -> T:
    """Poll ``predicate()`` (a look at another process, its files or sockets) until it returns
    something truthy, and return that. Looks start 5 ms apart and back off to ``every``, so a
    quick state is seen quickly and a slow one does not busy the box."""
    delay = min(0.005, every)
    for _ in polls(what, timeout):
        value = predicate()
        if value:
            return value
        time.sleep(delay)
        delay = min(delay * 2, every)
    raise AssertionError("unreachable")  # polls() raises first


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    """The stripped text of a file another process writes (an exit code, say) once it has some."""
    return wait_until(lambda: path.exists() and path.read_text().strip(), path.name, timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tmux:
    """A tmux server of our own (its own socket and config), for a real terminal."""

    def __init__(self, folder: Path, size: tuple[int, int] = (100, 30)) -> None:
        # A socket of our own (short path: unix socket paths are limited), removed at the end.
        self.socket = Path(tempfile.gettempdir()) / f"ag-tui-e2e-{os.getpid()}-{secrets.token_hex(3)}.sock"
        self.size = size
        conf = folder / "tmux.conf"
        conf.write_text(f'set -g default-terminal "screen-256color"\nset -g default-size {size[0]}x{size[1]}\n'
                        'set -g history-limit 100\n')
        self.base = [TMUX, "-S", str(self.socket), "-f", str(conf)]

    def __call__(self, *args: str) -> str:
        out = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=15)
        if out.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def window(self, target: str) -> None:
        """A session ``e2e`` with the window ``target`` ("e2e:name") at our size, running nothing yet.

        The window first, then the program in it (``run``): a detached window is sized just
        after it starts, and a program that starts in that instant can miss the resize."""
        session, name = target.split(":")
        w, h = self.size
        self("new-session", "-d", "-s", session, "-n", name, "-x", str(w), "-y", str(h), "sleep 600")
        wait_until(lambda: self("display", "-p", "-t", target, "#{pane_width}x#{pane_height}").strip()
                   == f"{w}x{h}", "the window's size", timeout=10)

    def run(self, target: str, command: str) -> None:
        """Replace what runs in ``target`` by the shell command ``command``."""
        self("respawn-pane", "-k", "-t", target, command)

    def dashboard(self, folder: Path, home: Path, sshd: Sshd | None = None, target: str = "e2e:tui") -> str:
        """``ag tui`` (``tui_command``) in a new window ``target``: its first screen, once the
        runs list is drawn."""
        self.window(target)
        self.run(target, tui_command(folder, home, sshd))
        return self.wait_for(target, "1 Runs")

    def screen(self, target: str) -> str:
        return self("capture-pane", "-p", "-t", target)

    def wait_for(self, target: str, text: str, timeout: float = 30.0, every: float = 0.1) -> str:
        """The screen of ``target`` once ``text`` is on it (the screen is in the error otherwise)."""
        last = [""]

        def shown() -> str | None:
            last[0] = self.screen(target)
            return last[0] if text in last[0] else None

        try:
            return wait_until(shown, f"{text!r} in {target}", timeout, every)
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{last[0]}") from None

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=15)
        self.socket.unlink(missing_ok=True)


class Sshd:
    """An sshd of our own on 127.0.0.1: a fresh host key, one authorised key, nothing else."""

    def __init__(self, folder: Path) -> None:
        d = folder / "ssh"
        d.mkdir()
        self.key = d / "id_ed25519"
        host_key = d / "host_ed25519"
        for path in (self.key, host_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                           check=True, capture_output=True, timeout=30)
        (d / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        self.port = free_port()
        config = d / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {host_key}\n"
            f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin prohibit-password\n"
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        self.log = d / "sshd.log"
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        wait_until(self._listening, f"sshd on port {self.port} (its log: {self.log})", timeout=10)

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"sshd exited: {self.log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def command(self, remote: str) -> str:
        """A shell command that runs ``remote`` on this host over SSH, in a pseudo-terminal."""
        return shlex.join([
            SSH, "-tt", "-i", str(self.key), "-p", str(self.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "127.0.0.1", remote,
        ])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class DaskProcs:
    """A dask.distributed cluster on loopback as processes of our own: ``dask scheduler`` (its
    address read from its scheduler file) and one ``dask worker`` per entry of ``workers``
    (each that worker's extra arguments). Each runs in a session of its own, so closing ends
    its whole process group; each logs to ``folder/<name>.log``."""

    def __init__(self, folder: Path, workers: list[list[str]], env: dict | None = None) -> None:
        self.folder = folder
        self.env = {**os.environ, **(env or {})}
        self.procs: list[subprocess.Popen] = []
        dask = str(Path(sys.executable).parent / "dask")
        sched_file = folder / "scheduler.json"
        self._start([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(sched_file)], "scheduler")
        wait_until(lambda: sched_file.exists() and sched_file.stat().st_size, "the scheduler", timeout=60)
        self.address = json.loads(sched_file.read_text())["address"]
        for i, args in enumerate(workers):
            self._start([dask, "worker", self.address, "--host", "127.0.0.1", "--no-dashboard", *args], f"worker{i}")

    def _start(self, argv: list[str], name: str) -> None:
        with open(self.folder / f"{name}.log", "wb") as log:
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                               cwd=self.folder, start_new_session=True))

    def close(self, timeout: float = 10) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
