"""Running the plan: one fresh process per measurement, repetitions interleaved.

For each workload, repetition 1 of every case runs, then repetition 2, and so on, so a slow
drift of the machine (thermal, page cache, a neighbour) spreads over all variants instead of
favouring whichever ran first. Every measurement gets a fresh temporary directory (also its
working directory and ``TMPDIR``), a hard timeout, and an environment without ``PYTHONPATH`` or
``AETHERGRAPH_*`` settings of the caller; the peers get the offline environment of
``peer_env``.

Script cases print one JSON line (``benchkit.measure.emit``). Whole-process cases (B4) are
timed from here: wall from spawn to exit, CPU and peak RSS of the child from ``os.wait4``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

from .peer_env import OFFLINE_ENV, workspace_env
from .plan import Case
from .venvs import BENCH

TMP_BASE = BENCH / "results" / "tmp"  # on the repository's disk, like a real store; gitignored

# How long after the last deletion a settle_fs case waits (after a sync). On ext4 without a
# journal (this machine's root disk) the inode allocator skips every inode freed in the last 60
# s (360 s while its inode-table block is dirty) one at a time, looking each up in the buffer
# cache: a workload that creates files right after thousands were deleted pays for each of
# them on every create. B9 run back to back lost up to 45% of its throughput to it (perf: the
# kernel's recently_deleted() and its buffer lookups, 16% of all CPU samples); 65 s after a
# sync it still lost ~30%, 130 s after ~12%, 400 s after nothing. The wait is the kernel's
# longest window and a margin.
SETTLE_S = 370.0
_last_delete: float | None = None  # monotonic time of this harness's last folder deletion


def settle_fs(log: Callable[[str], None]) -> None:
    """Sync, then wait until SETTLE_S have passed since this harness last deleted a folder
    (the whole SETTLE_S when it has deleted none: what ran before it is unknown)."""
    os.sync()
    since = None if _last_delete is None else time.monotonic() - _last_delete
    wait = SETTLE_S if since is None else SETTLE_S - since
    if wait > 0:
        log(f"settling the disk for {wait:.0f} s (files deleted just before would be charged to "
            f"the next measurement)")
        time.sleep(wait)


def _remove(folder: str) -> None:
    global _last_delete
    shutil.rmtree(folder, ignore_errors=True)
    _last_delete = time.monotonic()


def base_env() -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE would make every process compile its imports from source: B4 is
    # specified with .pyc files present, and the other workloads import outside the timer.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AETHERGRAPH_")
           and k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def case_env(case: Case, tmp: str) -> dict[str, str]:
    env = base_env()
    env["TMPDIR"] = tmp
    if case.settle_fs:
        env["BENCH_KEEP_STORE"] = "1"  # the script's store stays in tmp; the harness deletes it later
    if case.framework != "ours":
        env.update(OFFLINE_ENV)
        env.update(workspace_env(tmp))
    return env


def run_workload(cases: list[Case], *, sink: Callable[[dict], None], log: Callable[[str], None],
                 settle: bool = True) -> None:
    """Run every repetition of ``cases``, interleaved; hand each result to ``sink``.

    Cases with ``settle_fs`` start on a settled disk (``settle``: False skips the wait, for
    quick checks) and keep their folders until the last of them has run, so that no
    measurement of theirs is charged for the deletion of another's files."""
    TMP_BASE.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    try:
        _run_all(cases, sink=sink, log=log, settle=settle, kept=kept)
    finally:
        for folder in kept:
            _remove(folder)


def _run_all(cases: list[Case], *, sink, log, settle: bool, kept: list[str]) -> None:
    if settle and any(c.settle_fs for c in cases):
        settle_fs(log)
    for case in cases:
        if case.process:  # B4: one untimed run first, so .pyc files exist
            _once(case, rep=0)
    total = sum(c.reps for c in cases)
    done = 0
    failed: set[str] = set()
    for rep in range(1, max((c.reps for c in cases), default=0) + 1):
        for case in cases:
            if rep > case.reps or case.key in failed:
                continue
            done += 1
            result = _once(case, rep, keep=kept if case.settle_fs else None)
            case.results.append(result)
            sink(result)
            log(f"[{case.workload} {done}/{total}] {case.framework} {case.variant}"
                f"{'' if case.n is None else f' n={case.n}'} rep {rep}/{case.reps}: {_brief(result)}")
            if "error" in result and "timed out" in result["error"]:
                failed.add(case.key)  # another try would burn the same timeout again


def _once(case: Case, rep: int, keep: list[str] | None = None) -> dict:
    """One measurement in a fresh folder, deleted after it (``keep``: appended there instead)."""
    tmp = tempfile.mkdtemp(dir=TMP_BASE, prefix=f"{case.workload}-{case.framework}-")
    try:
        record = {
            "type": "measurement", "workload": case.workload, "framework": case.framework,
            "variant": case.variant, "n": case.n, "group": case.group, "ref": case.ref,
            "storage": case.storage, "note": case.note, "rep": rep, "command": case.command,
        }
        runner = _process if case.process else _script
        record.update(runner(case, tmp))
        return record
    finally:
        if keep is None:
            _remove(tmp)
        else:
            keep.append(tmp)


def _script(case: Case, tmp: str) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(case.argv, cwd=tmp, env=case_env(case, tmp), capture_output=True,
                              text=True, timeout=case.timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {case.timeout_s:g} s"}
    out = {"process_wall_s": time.perf_counter() - t0}
    if proc.returncode != 0:
        out["error"] = f"exit status {proc.returncode}"
        out["stderr_tail"] = proc.stderr[-2000:]
        return out
    for line in reversed(proc.stdout.splitlines()):
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict) and parsed.get("workload") == case.workload:
            parsed = {k: v for k, v in parsed.items() if k not in ("workload", "framework", "variant", "n")}
            out.update(parsed)
            return out
    out["error"] = "no result line on stdout"
    out["stdout_tail"] = proc.stdout[-2000:]
    return out


def _process(case: Case, tmp: str) -> dict:
    with open(os.path.join(tmp, "stderr"), "w+b") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(case.argv, cwd=tmp, env=case_env(case, tmp),
                                stdout=subprocess.DEVNULL, stderr=err)
        killer = threading.Timer(case.timeout_s, lambda: os.kill(proc.pid, signal.SIGKILL))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            err.seek(0)
            return {"error": f"exit status {proc.returncode}",
                    "stderr_tail": err.read()[-2000:].decode(errors="replace")}
    # ru_maxrss is kept for the record but not reported: across fork + exec the child inherits
    # the harness's high-water mark, so it cannot go below run.py's own RSS.
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_peak_kib_floored": usage.ru_maxrss}


def _brief(r: dict) -> str:
    if "error" in r:
        return "FAILED: " + r["error"]
    for key, scale, unit in (("us_per_node", 1, "us/node"), ("events_per_s", 1, "events/s")):
        if key in r:
            return f"{r[key] * scale:,.0f} {unit} (wall {r['wall_s']:.2f} s)"
    return f"wall {r['wall_s'] * 1000:,.1f} ms, CPU {r['cpu_s'] * 1000:,.1f} ms"
