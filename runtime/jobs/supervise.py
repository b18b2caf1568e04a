"""The per-job supervisor, and the fork server that starts supervisors cheaply.

    python -m aethergraph.runtime.jobs.supervise <job_dir>     supervise one job (start it in a new session)
    python -m aethergraph.runtime.jobs.supervise --serve       read job folders on stdin, one per line, and
                                                   fork a supervisor for each

A supervisor is one small process per job, in a session of its own (so neither a Ctrl-C at the
runtime's terminal nor the runtime's death reaches it). It starts the job's argv in a process
group of its own with stdout/stderr going to the job folder, records pid + start time, waits,
and writes how the job ended (exit status, signal, rusage) to ``state.json``: whole (tmp +
rename), and fsync'd with ``--fsync``, which a runtime asks for when its durability is strict.
It is the only writer of the job's state once it runs, and it outlives the runtime that
started it: a job that ends while no runtime is alive is still recorded.

It is also a child subreaper: orphaned grandchildren of the job are re-parented to it, so after
a cancel it can wait until nothing of the job's process group is left, and reap them.

Cancel: someone writes ``cancel.json`` and sends the supervisor SIGTERM; the supervisor sends
SIGTERM to the job's process group, SIGKILL after ``grace_s``. A timeout does the same from a
timer (SIGALRM) and records FAILED. No thread, no polling while the job runs: the supervisor
sleeps in ``wait4`` and the signal handlers do the rest.

Why a fork server: starting a Python interpreter costs ~13 ms of CPU; forking an idle one that
already imported this module costs well under a millisecond. The runtime starts one server per
process and sends it job folders; each fork is an independent supervisor (``setsid``), which
outlives the server. The server tells the runtime when a supervisor ended (``ended <job_id>``)
and supervisors say when their job started (``running <job_id>``), so a runtime learns of an
ended job at once instead of at its next scan. Those lines are hints: ``state.json`` is the fact.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from .protocol import JobState, Rusage
from .store import JobStore, proc_start_time, tail_file

PR_SET_CHILD_SUBREAPER = 36
STDERR_TAIL_LINES = 10


def _load_libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()  # loaded once, in the fork server, before any fork


def _set_subreaper() -> None:
    if _LIBC is not None:  # not Linux: grandchildren go to init instead; the group kill still works
        _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


# Signals a supervisor ignores that a job must not inherit ignored.
_DEFAULT_IN_JOB = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)


def _spawn(argv: list[str], spec, job_dir: str, env: dict) -> int:
    """Start the job in a new process group, output appended to the job folder; its pid.

    ``posix_spawn`` (a vfork underneath): this process is a fork of the fork server, and a
    full fork of it again would copy page tables and fault in pages for nothing. A job with a
    ``cwd`` goes through ``subprocess`` (posix_spawn cannot change directory before 3.13)."""
    if spec.cwd:
        out = os.open(f"{job_dir}/stdout", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        err = os.open(f"{job_dir}/stderr", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=spec.cwd,
                                    env=env, process_group=0, close_fds=True, restore_signals=True)
        finally:
            os.close(out)
            os.close(err)
        proc.returncode = 0  # reaped with wait4 below; keep Popen from trying
        return proc.pid
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    return os.posix_spawnp(
        argv[0], argv, env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, f"{job_dir}/stdout", flags, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, f"{job_dir}/stderr", flags, 0o600),
        ],
        setpgroup=0, setsigdef=_DEFAULT_IN_JOB, setsigmask=(),
    )


def _notify(fd: int | None, what: str, job_id: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, f"{what} {job_id}\n".encode())
    except OSError:  # nobody listens (the runtime is gone) or the pipe is full: only a hint
        pass


def _killpg(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _reaped():
    """The pids of the children that have ended, reaped one by one (none left to reap now:
    the end)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid


def _reap_any() -> None:
    for _ in _reaped():
        pass


def _clear_group(pgid: int, grace_s: float, *, term_first: bool) -> None:
    """Until no process of group ``pgid`` is left: SIGTERM (if asked), SIGKILL after grace."""
    if term_first:
        _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    killed = False
    delay = 0.002
    while True:
        _reap_any()
        if not _killpg(pgid, 0):
            return
        if not killed and time.monotonic() >= deadline:
            _killpg(pgid, signal.SIGKILL)
            killed = True
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _stderr_tail(job_dir: Path) -> str:
    lines = tail_file(job_dir / "stderr", STDERR_TAIL_LINES)
    return "\n".join(line[-500:] for line in lines)


def _last_line(job_dir: Path) -> str | None:
    for line in reversed(tail_file(job_dir / "stdout", 5)):
        if line.strip():
            return line[-1000:]
    return None


def supervise(job_dir: Path, notify_fd: int | None = None, *, fsync: bool = False) -> int:
    """Run the job of ``job_dir`` to its end and record it. Returns the process exit code."""
    job_id = job_dir.name
    store = JobStore(job_dir.parent.parent)
    _set_subreaper()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    record = store.read_record(job_id)
    spec = record.spec
    status = store.read_raw(job_id)  # the claim: QUEUED, with the runtime that claimed it
    if status.state is not JobState.QUEUED:
        return 0  # cancelled before it started, or someone else's: not ours to run
    me = os.getpid()
    status.supervisor_pid, status.supervisor_start = me, proc_start_time(me) or 0

    # Everything the signal handlers decide, in one place.
    mode = {"phase": "starting", "cancel": None, "timed_out": False, "pgid": 0,
            "grace": spec.grace_s}

    def on_term(signum, frame) -> None:
        if mode["cancel"] is not None:
            return
        req = store.read_cancel(job_id)
        mode["cancel"] = req.by if req is not None else "signal"
        if req is not None:
            mode["grace"] = req.grace_s
        if mode["phase"] == "running":
            _stop_job()

    def on_alarm(signum, frame) -> None:
        if mode["phase"] == "running" and spec.timeout_s is not None and mode["cancel"] is None \
                and not mode["timed_out"]:
            mode["timed_out"] = True
            _stop_job()
        elif mode["phase"] == "stopping":
            _killpg(mode["pgid"], signal.SIGKILL)

    def _stop_job() -> None:
        mode["phase"] = "stopping"
        _killpg(mode["pgid"], signal.SIGTERM)
        if mode["grace"] > 0:
            signal.setitimer(signal.ITIMER_REAL, mode["grace"])
        else:
            _killpg(mode["pgid"], signal.SIGKILL)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    if os.path.exists(store.path(job_id, "cancel.json")):
        on_term(signal.SIGTERM, None)

    def finish(state: JobState, **fields) -> int:
        status.state = state
        status.ended = time.time()
        for k, v in fields.items():
            setattr(status, k, v)
        store.write(status, fsync=fsync)
        _notify(notify_fd, "ended", job_id)
        return 0

    if mode["cancel"] is not None:
        return finish(JobState.CANCELLED, cancelled_by=mode["cancel"], error="cancelled before it started")

    argv = ["/bin/sh", "-c", spec.argv[0]] if spec.shell else spec.argv
    if spec.env or not spec.inherit_env:
        env = dict(os.environ) if spec.inherit_env else {}
        env.update(spec.env)
    else:
        env = os.environ
    try:
        pid = _spawn(argv, spec, str(job_dir), env)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and spec.cwd and not os.path.isdir(spec.cwd):
            what = f"no such directory {spec.cwd!r}"
        elif isinstance(exc, FileNotFoundError):
            what = "no such program"
        else:
            what = exc.strerror or type(exc).__name__
        return finish(JobState.FAILED, error=f"cannot start {argv[0]!r}: {what}")
    mode["pgid"] = pid
    status.state = JobState.RUNNING
    status.pid, status.pid_start = pid, proc_start_time(pid, zombie_ok=True) or 0
    status.started = time.time()
    store.write(status)
    _notify(notify_fd, "running", job_id)
    mode["phase"] = "running"
    if mode["cancel"] is not None or store.read_cancel(job_id) is not None:
        mode["cancel"] = None
        on_term(signal.SIGTERM, None)  # asked while we were starting it
    elif spec.timeout_s is not None:
        signal.setitimer(signal.ITIMER_REAL, spec.timeout_s)

    while True:
        try:
            _, wstatus, _ = os.wait4(pid, 0)
            break
        except ChildProcessError:  # reaped elsewhere: should not happen; stay honest
            wstatus = None
            break
    stopping = mode["phase"] == "stopping"
    # The job is its whole process group: nothing of it stays behind. Leftovers of a job that
    # ended by itself get SIGTERM and the usual grace; a stopping job's group is killed as asked.
    leftover = _killpg(pid, 0)
    if leftover:
        _clear_group(pid, mode["grace"], term_first=not stopping)
    signal.setitimer(signal.ITIMER_REAL, 0)
    _reap_any()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    rusage = Rusage(user_s=ru.ru_utime, system_s=ru.ru_stime, max_rss_kb=ru.ru_maxrss)
    code = os.waitstatus_to_exitcode(wstatus) if wstatus is not None else None
    exit_code, sig = (code, None) if code is None or code >= 0 else (None, -code)
    if mode["cancel"] is not None:
        return finish(JobState.CANCELLED, exit_code=exit_code, signal=sig, rusage=rusage,
                      cancelled_by=mode["cancel"], error=f"cancelled by {mode['cancel'] or 'request'}")
    if mode["timed_out"]:
        return finish(JobState.FAILED, exit_code=exit_code, signal=sig, rusage=rusage, timed_out=True,
                      error=f"timed out after {spec.timeout_s:g}s and was killed")
    if code == 0:
        return finish(JobState.SUCCEEDED, exit_code=0, rusage=rusage, result=_last_line(job_dir))
    how = f"exit code {code}" if sig is None else f"killed by {signal.Signals(sig).name}"
    if code is None:
        how = "exit status unknown"
    tail = _stderr_tail(job_dir)
    return finish(JobState.FAILED, exit_code=exit_code, signal=sig, rusage=rusage,
                  error=f"{how}" + (f"; stderr ends with:\n{tail}" if tail else ""))


def serve(*, fsync: bool = False) -> int:
    """The fork server: one supervisor per job folder read from stdin; ends at EOF (its
    supervisors live on)."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the runtime to handle
    os.set_blocking(1, False)
    children: dict[int, str] = {}

    def reap(signum, frame) -> None:
        for pid in _reaped():
            job_id = children.pop(pid, None)
            if job_id is not None:
                _notify(1, "ended", job_id)

    signal.signal(signal.SIGCHLD, reap)
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        job_dir = Path(line.decode().strip())
        # No SIGCHLD between the fork and noting the child: its end must find its name.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                _child(job_dir, fsync)
            children[pid] = job_dir.name
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _child(job_dir: Path, fsync: bool) -> None:
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
        code = supervise(job_dir, notify_fd=1, fsync=fsync)
    except BaseException as exc:  # record why, where the job's own errors go
        try:
            with open(job_dir / "supervisor.err", "a") as f:
                f.write(f"{type(exc).__name__}: {exc}\n")
        except OSError:
            pass
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    fsync = "--fsync" in argv
    argv = [a for a in argv if a != "--fsync"]
    if argv == ["--serve"]:
        return serve(fsync=fsync)
    if len(argv) != 1:
        print("usage: python -m aethergraph.runtime.jobs.supervise [--fsync] <job_dir> | --serve", file=sys.stderr)
        return 2
    if os.getpid() != os.getsid(0):
        os.setsid()
    job_dir = Path(argv[0]).absolute()
    store = JobStore(job_dir.parent.parent)
    me = os.getpid()
    claim = store.read_record(job_dir.name).queued()
    claim.owner_pid, claim.owner_start = me, proc_start_time(me) or 0
    if not store.claim(claim):
        print(f"job {job_dir.name} was already started or cancelled", file=sys.stderr)
        return 1
    return supervise(job_dir, fsync=fsync)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
