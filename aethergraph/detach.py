"""Runs in processes of their own: ``ag run --detach``, and resumes asked for by the dashboard
or the sidecar.

A run must not live inside whichever process happened to ask for it: that process's services,
terminal and lifetime are not the run's. So a detached run is a fresh ``ag`` process:

- in a session of its own (``start_new_session``): no controlling terminal, so a terminal or an
  SSH login hanging up never reaches it;
- stdin from /dev/null: its asks wait for the sidecar (``ag attach``, ``ag answer``, the
  dashboard) instead of a terminal nobody watches;
- stdout and stderr appended to ``<run log>.out`` next to the run's log (0600): what it printed
  stays with the run, one header line per process.

The spawner waits until the log shows the new process took the run (a ``run_started`` or
``run_resumed`` with its pid), so "started" is a fact, and an early failure (bad import, a run
that cannot be resumed) is reported with the process's own words instead of silence.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import trio

from aethergraph.runtime import events as ev
from aethergraph.runtime.errors import AetherGraphError
from aethergraph.runtime.history import HOST
from aethergraph.runtime.store.layout import StoreLayout

START_TIMEOUT_S = 60.0  # importing a heavy entrypoint can take a while; we never kill it


class DetachFailed(AetherGraphError):
    """The detached process ended before it took the run; the message carries its output."""


@attrs.frozen
class Detached:
    run_id: str
    pid: int
    host: str
    output: Path
    started: bool  # False: still starting when we stopped waiting (it goes on regardless)


def private_parents(path: Path) -> None:
    """Create ``path``'s missing folders 0700: the store is private, and ``mkdir(parents=True)``
    would give the parents the umask's mode."""
    missing = []
    folder = path.parent
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass


def output_path(layout: StoreLayout, run_id: str) -> Path:
    """Where the processes that ran ``run_id`` detached wrote their stdout and stderr."""
    return layout.run_log(run_id).with_suffix(".out")


def ag_argv(*args: str) -> list[str]:
    """The ``ag`` command line, with this interpreter (the venv the caller runs in)."""
    return [sys.executable, "-m", "aethergraph.cli", *args]


def spawn(layout: StoreLayout, run_id: str, args: list[str], *, cwd: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``ag ARGS`` detached, its output appended to the run's ``.out`` file."""
    out = output_path(layout, run_id)
    private_parents(out)
    full_env = dict(os.environ if env is None else env)
    full_env["AETHERGRAPH_HOME"] = str(layout.home)
    full_env["PYTHONUNBUFFERED"] = "1"  # the .out file is read while the run goes on
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        header = f"--- {stamp} UTC: ag {' '.join(args)} (started by pid {os.getpid()} on {HOST})\n"
        os.write(fd, header.encode())
        return subprocess.Popen(
            ag_argv(*args), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
            start_new_session=True, close_fds=True, cwd=cwd, env=full_env,
        )
    finally:
        os.close(fd)


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _took_the_run(path: Path, offset: int, pid: int) -> tuple[bool, int]:
    """Whether the log, beyond ``offset``, has a start or resume by ``pid``; and how far it read
    (only complete lines count: the writer may be mid-line)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return False, offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        if b'"pid":' not in line:
            continue
        try:
            e = ev.decode(line)
        except Exception:
            continue
        if type(e) in (ev.RunStarted, ev.RunResumed) and e.pid == pid:
            return True, offset + end
    return False, offset + end


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    kept = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("--- ")]
    return "\n".join(kept[-lines:])


def _reap_later(proc: subprocess.Popen) -> None:
    """Wait for it in the background, so a long-lived spawner (the dashboard, a runtime serving
    its sidecar) leaves no zombie that would look alive to ``kill(pid, 0)``."""
    threading.Thread(target=proc.wait, name=f"ag-reap-{proc.pid}", daemon=True).start()


def start(layout: StoreLayout, run_id: str, args: list[str], *, cwd: str | None = None,
          env: dict[str, str] | None = None, timeout: float = START_TIMEOUT_S) -> Detached:
    """Spawn ``ag ARGS`` for ``run_id`` detached and wait until it has taken the run.

    Raises ``DetachFailed`` (with the last lines it printed) when it exits first."""
    log = layout.run_log(run_id)
    offset = _log_size(log)
    proc = spawn(layout, run_id, args, cwd=cwd, env=env)
    out = output_path(layout, run_id)
    deadline = time.monotonic() + timeout
    started = False
    while True:
        took, offset = _took_the_run(log, offset, proc.pid)
        if took:
            started = True
            break
        rc = proc.poll()
        if rc is not None:
            took, offset = _took_the_run(log, offset, proc.pid)  # it may have run to its end
            if took:
                started = True
                break
            said = _tail(out)
            raise DetachFailed(
                f"`ag {' '.join(args)}` exited with {rc} before it took run {run_id}"
                + (f":\n{said}" if said else f" (its output: {out})")
            )
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if proc.returncode is None:
        _reap_later(proc)
    return Detached(run_id=run_id, pid=proc.pid, host=HOST, output=out, started=started)


def start_resume(layout: StoreLayout, run_id: str, *, answers: list[str] = (), **kw) -> Detached:
    """``ag resume RUN`` in a process of its own (the dashboard's ``R``, the sidecar's
    ``resume``, ``ag resume --detach``): the run gets its entrypoint's own services, its own
    output file, and a lifetime that does not depend on whoever asked."""
    args = ["resume", run_id, "--home", str(layout.home)]
    for a in answers:
        args += ["--answer", a]
    return start(layout, run_id, args, **kw)


async def start_resume_async(layout: StoreLayout, run_id: str) -> Detached:
    """``start_resume`` from trio (the wait is a thread: it polls the log)."""
    return await trio.to_thread.run_sync(lambda: start_resume(layout, run_id))
