"""End to end in a real terminal: tmux runs the tutorial in one window and ``ag tui`` in
another; the dashboard answers the tutorial's retry ask with ``no`` by keys alone, and the run
ends FAILED. Everything is polled with deadlines; nothing sleeps unbounded.

Skipped (saying so) only when tmux is not installed; ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import TUTORIAL, ag

pytestmark = pytest.mark.slow

TMUX = shutil.which("tmux")


class Tmux:
    def __init__(self, tmp_path: Path) -> None:
        # A socket of our own (short path: unix socket paths are limited), removed at the end.
        self.socket = Path(tempfile.gettempdir()) / f"ag-tui-e2e-{os.getpid()}-{secrets.token_hex(3)}.sock"
        conf = tmp_path / "tmux.conf"
        conf.write_text('set -g default-terminal "screen-256color"\nset -g default-size 100x30\n'
                        'set -g history-limit 100\n')
        self.base = [TMUX, "-S", str(self.socket), "-f", str(conf)]

    def __call__(self, *args: str) -> str:
        out = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=15)
        if out.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def screen(self, target: str) -> str:
        return self("capture-pane", "-p", "-t", target)

    def wait_for(self, target: str, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(target)
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {text!r} in {target}; the screen:\n{screen}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=15)
        self.socket.unlink(missing_ok=True)


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {path.name}")
        time.sleep(0.1)
    return path.read_text().strip()


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it with apt-get)")
def test_dashboard_in_tmux_answers_the_tutorials_retry_ask(tmp_path):
    home = Path(os.environ["AETHERGRAPH_HOME"])
    bin_dir = Path(sys.executable).parent
    ag_cmd = str(bin_dir / "ag") if (bin_dir / "ag").exists() else f"{sys.executable} -m aethergraph.cli.main"
    env = f"AETHERGRAPH_HOME={home} TZ=UTC"
    # COLUMNS/LINES, when a shell exported them, would pin the app to a stale size.
    tui_cmd = f"cd {tmp_path} && env -u COLUMNS -u LINES {env} {ag_cmd} tui; echo $? > {tmp_path}/tui.rc"
    tutorial_cmd = (f"cd {tmp_path} && env {env} AG_DEMO_FAIL_RATE=1 AG_DEMO_TIME_SCALE=0.05 "
                    f"{sys.executable} {TUTORIAL} < /dev/null > {tmp_path}/tutorial.out 2>&1; "
                    f"echo $? > {tmp_path}/tutorial.rc")
    tmux = Tmux(tmp_path)
    try:
        # The window first, then the dashboard in it: a detached window is sized just after it
        # starts, and a program that starts in that instant can miss the resize.
        tmux("new-session", "-d", "-s", "e2e", "-n", "tui", "-x", "100", "-y", "30", "sleep 600")
        wait_until(lambda: tmux("display", "-p", "-t", "e2e:tui", "#{pane_width}x#{pane_height}").strip()
                   == "100x30", "the window's size")
        tmux("respawn-pane", "-k", "-t", "e2e:tui", tui_cmd)
        first = tmux.wait_for("e2e:tui", "1 Runs")
        assert "no runtime" in first
        tmux("new-window", "-d", "-t", "e2e", "-n", "tutorial", tutorial_cmd)
        tmux.wait_for("e2e:tui", "Asks [1]")  # the badge, seen from the Runs panel
        tmux("send-keys", "-t", "e2e:tui", "3")
        inbox = tmux.wait_for("e2e:tui", "failed. Retry?")
        assert "ask-" in inbox and "text" in inbox
        tmux("send-keys", "-t", "e2e:tui", "Enter")
        dialog = tmux.wait_for("e2e:tui", "TEXT ASK")
        assert "Retry? (yes/no)" in dialog
        tmux("send-keys", "-t", "e2e:tui", "-l", "no")
        tmux("send-keys", "-t", "e2e:tui", "Enter")
        assert wait_for_file(tmp_path / "tutorial.rc") == "0"
        tmux.wait_for("e2e:tui", "Asks [0]")
        tmux("send-keys", "-t", "e2e:tui", "1")
        tmux.wait_for("e2e:tui", "FAILED")
        tmux("send-keys", "-t", "e2e:tui", "q")
        assert wait_for_file(tmp_path / "tui.rc") == "0"
    finally:
        tmux.kill()
    out = (tmp_path / "tutorial.out").read_text()
    assert "Not retrying; stopping here." in out
    runs = json.loads(ag("runs", "--json", env={"AETHERGRAPH_HOME": str(home)}).stdout)
    assert [r["status"] for r in runs] == ["failed"]
    shown = json.loads(ag("show", runs[0]["run_id"], "--json", env={"AETHERGRAPH_HOME": str(home)}).stdout)
    answers = [(e["answer"], e["by"]) for e in shown["events"] if e["type"] == "ask_answered"]
    assert answers == [("no", "ag tui (sidecar)")]
