"""A dead process's pid taken by another: nothing may mistake the newcomer for the dead runtime.

This machine's ``pid_max`` is 32,768, so pids come round within minutes of busy work. A run or
a sidecar whose process was killed -9 must read as gone whatever now has its pid: the owner
lock (which the kernel drops when its holder dies) answers, not ``kill(pid, 0)``. And readers
(``ag runs``, ``ag asks``, the dashboard) never delete what a dead runtime left behind: the
next runtime that opens the store does.

The reuse is real: as root, ``/proc/sys/kernel/ns_last_pid`` is set so that the next process
created gets the dead pid (the tests skip where that file cannot be written).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from aethergraph.runtime import events as ev
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events

from .agproc import wait_until
from .conftest import TUTORIAL, ag

pytestmark = pytest.mark.slow

TARGET = f"{TUTORIAL}:submit_poll_notify"
INPUT = json.dumps({"spec": {"name": "toy-sim", "steps": 3}})
CRASH_ENV = {"AG_DEMO_TIME_SCALE": "0.05", "AG_DEMO_FAIL_RATE": "1",
             "AETHERGRAPH_FAULT": "killafter:ask_opened", "AETHERGRAPH_DURABILITY": "strict"}
NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def _can_choose_pids() -> bool:
    try:
        with open(NS_LAST_PID, "w"):
            return True
    except OSError:
        return False


def take_pid(pid: int) -> subprocess.Popen:
    """A ``sleep`` that gets ``pid`` (free: its process died), or a skip if the kernel will not."""
    if not _can_choose_pids():
        pytest.skip("needs root to choose the next pid (/proc/sys/kernel/ns_last_pid)")
    for _ in range(50):  # another process may be created between the write and the fork
        NS_LAST_PID.write_text(str(pid - 1))
        proc = subprocess.Popen(["sleep", "120"])
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    pytest.skip(f"pid {pid} could not be taken (a busy machine?)")


@pytest.fixture
def crashed(tmp_path, home):
    """The tutorial killed -9 while its retry ask is open: its log says RUNNING with its pid, and
    its sidecar's advert and socket are left in the store."""
    out = ag("run", TARGET, "--input", INPUT, cwd=tmp_path, env=CRASH_ENV)
    assert out.returncode == -signal.SIGKILL, out.stderr
    layout = StoreLayout.at(home)
    (log,) = layout.iter_logs()
    started = next(e for e in read_events(log, warn=False) if type(e) is ev.RunStarted)
    (advert,) = layout.runtimes_dir.glob("*.json")
    return started, advert


def test_a_crashed_run_whose_pid_was_taken_reads_interrupted_everywhere(tmp_path, home, crashed):
    started, _ = crashed
    squatter = take_pid(started.pid)
    try:
        (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
        assert run["status"] == "interrupted"
        shown = ag("show", run["run_id"], cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "(running)" not in shown.stdout and "gone: `ag resume` continues it" in shown.stdout
        tailed = ag("tail", run["run_id"], cwd=tmp_path)
        assert tailed.returncode == 2 and "not running in any live runtime (interrupted)" in tailed.stderr
        # ag asks lists the open ask of the interrupted run (before: taken for a live run's, and
        # with no live runtime to ask, "no interrupted run waits for an answer")
        asks = ag("asks", "--json", cwd=tmp_path)
        assert asks.returncode == 0, asks.stderr
        assert [(a["run_id"], a["run_status"]) for a in json.loads(asks.stdout)] == [
            (run["run_id"], "interrupted")]

        from aethergraph.runtime.sidecar.client import find_runtimes
        from aethergraph.tui.state import RunModel

        assert find_runtimes(str(home)) == []  # the dead runtime's advert is not a live one
        model = RunModel(run["run_id"], StoreLayout.at(home))
        for e in read_events(StoreLayout.at(home).run_log(run["run_id"]), warn=False):
            model.apply(e)
        assert model.status == ev.INTERRUPTED  # the dashboard's run detail

        # Answered offline and resumed in a process of its own (before: "is still running").
        (ask,) = json.loads(asks.stdout)
        assert ag("answer", ask["ask_id"], "no", cwd=tmp_path).returncode == 0
        resumed = ag("resume", run["run_id"], "--detach", env=CRASH_ENV | {"AETHERGRAPH_FAULT": ""},
                     cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        log = StoreLayout.at(home).run_log(run["run_id"])
        end = wait_until(lambda: next((e for e in read_events(log, warn=False) if type(e) is ev.RunFinished),
                                      None), "the resumed run's end")
        assert end.status == ev.FAILED  # the job failed and the answer was "no"
    finally:
        squatter.kill()
        squatter.wait()


def test_readers_leave_a_dead_runtime_s_advert_to_the_next_runtime(tmp_path, home, crashed):
    _, advert = crashed
    socket = advert.with_suffix(".sock")
    assert socket.exists()
    for args in (("runs",), ("asks",), ("runs", "--json")):
        ag(*args, cwd=tmp_path)
    from aethergraph.runtime.sidecar.client import find_runtimes

    assert find_runtimes(str(home)) == []
    assert advert.exists() and socket.exists()  # a reader wrote nothing

    # The next runtime on this store (its sidecar on) clears what the dead one left.
    script = tmp_path / "quick.py"
    script.write_text("from aethergraph import graph_fn\n\n@graph_fn(name='quick')\n"
                      "async def quick(*, context):\n    return 1\n")
    out = ag("run", f"{script}:quick", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not advert.exists() and not socket.exists()
    assert list(StoreLayout.at(home).runtimes_dir.iterdir()) == []
