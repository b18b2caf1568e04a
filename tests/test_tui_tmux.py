"""End to end in a real terminal: tmux runs the tutorial in one window and ``ag tui`` in
another; the dashboard answers the tutorial's retry ask with ``no`` by keys alone, and the run
ends FAILED. Everything is polled with deadlines; nothing sleeps unbounded.

Twice: ``ag tui`` straight in tmux (``TERM=screen-256color``), and over a real SSH session
(``ssh -tt`` to an sshd of the test's own on loopback, key login, ``TERM=xterm-256color`` on
the remote side) — the way the dashboard is meant to be used.

Skipped (saying so) only when tmux, or for the SSH case ssh/sshd, is not installed;
``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from .agproc import SSH, SSHD, TMUX, ag_shell, terminal, wait_for_file, wait_until
from .conftest import TUTORIAL, ag

pytestmark = pytest.mark.slow


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it with apt-get)")
@pytest.mark.parametrize("via", ["tmux", "ssh"])
def test_dashboard_in_tmux_answers_the_tutorials_retry_ask(tmp_path, home, via):
    if via == "ssh" and not (SSH and SSHD):
        pytest.skip("ssh or sshd is not installed (.ci/run installs them with apt-get)")
    env = f"AETHERGRAPH_HOME={home} TZ=UTC"
    tutorial_cmd = (f"cd {tmp_path} && env {env} AG_DEMO_FAIL_RATE=1 AG_DEMO_TIME_SCALE=0.05 "
                    f"{sys.executable} {TUTORIAL} < /dev/null > {tmp_path}/tutorial.out 2>&1; "
                    f"echo $? > {tmp_path}/tutorial.rc")
    with terminal(tmp_path, ssh=via == "ssh") as (tmux, sshd):
        first = tmux.dashboard(tmp_path, home, sshd)
        assert "no runtime" in first
        tmux("new-window", "-d", "-t", "e2e", "-n", "tutorial", tutorial_cmd)
        tmux.wait_for("e2e:tui", "Asks [1]")  # the badge, seen from the Runs panel
        tmux("send-keys", "-t", "e2e:tui", "3")
        # (the new-ask toast quotes the prompt too: wait for the inbox's own status line)
        inbox = tmux.wait_for("e2e:tui", "waiting · enter to answer")
        assert "ask-" in inbox and "text" in inbox and "failed. Retry?" in inbox
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
    out = (tmp_path / "tutorial.out").read_text()
    assert "Not retrying; stopping here." in out
    runs = json.loads(ag("runs", "--json", env={"AETHERGRAPH_HOME": str(home)}).stdout)
    assert [r["status"] for r in runs] == ["failed"]
    shown = json.loads(ag("show", runs[0]["run_id"], "--json", env={"AETHERGRAPH_HOME": str(home)}).stdout)
    answers = [(e["answer"], e["by"]) for e in shown["events"] if e["type"] == "ask_answered"]
    assert answers == [("no", "ag tui (sidecar)")]


HOSTILE_SCRIPT = '''
import trio

from aethergraph import graph_fn
from aethergraph.runtime.textsafe import HOSTILE

H = "".join(HOSTILE)


@graph_fn(name="hostile")
async def hostile(*, context):
    ch = context.channel()
    await ch.send_text(f"message {H}")
    context.logger().warning("log %s", H)
    return await ch.ask_choice(f"Deploy? {H}", ["Deploy", "Hold"])


async def main():
    print("ANSWER", await hostile(), flush=True)


trio.run(main)
'''


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it with apt-get)")
def test_hostile_run_content_leaves_the_terminal_alone_and_a_number_key_answers(tmp_path, home):
    """A run whose message, log line and ask carry OSC title, clear-screen, SGR, C1 and bidi
    sequences: the pane title and the screen are untouched while the dashboard shows them;
    then its choice ask is answered by pressing 2 (Hold), which the dialog shows before enter."""
    env = f"AETHERGRAPH_HOME={home} TZ=UTC"
    script = tmp_path / "hostile.py"
    script.write_text(HOSTILE_SCRIPT)
    with terminal(tmp_path) as (tmux, _):
        tmux.dashboard(tmp_path, home)
        tmux("select-pane", "-t", "e2e:tui", "-T", "e2e-title")
        title = lambda: tmux("display", "-p", "-t", "e2e:tui", "#{pane_title}").strip()  # noqa: E731
        assert title() == "e2e-title"
        tmux("new-window", "-d", "-t", "e2e", "-n", "run",
             f"cd {tmp_path} && env {env} {sys.executable} {script} < /dev/null > {tmp_path}/run.out 2>&1")
        tmux.wait_for("e2e:tui", "Asks [1]")
        tmux.wait_for("e2e:tui", "RUNNING")  # its row in the list (the toast quotes the ask too)
        tmux("send-keys", "-t", "e2e:tui", "Enter")  # open the run: its timeline
        tmux.wait_for("e2e:tui", "[1 ask: a]")
        tmux.wait_for("e2e:tui", "message ␛]0;pwned␇")
        tmux("send-keys", "-t", "e2e:tui", "m")  # its messages, wrapped
        screen = tmux.wait_for("e2e:tui", "[bold]bold[/bold]")
        assert "1 Runs" in screen and "RUN " in screen, screen  # not wiped by \x1b[2J
        tmux("send-keys", "-t", "e2e:tui", "l")
        tmux.wait_for("e2e:tui", "log ␛]0;pwned")
        assert title() == "e2e-title", "run content changed the pane title"
        tmux("send-keys", "-t", "e2e:tui", "3")
        tmux.wait_for("e2e:tui", "Deploy? ␛]0;pwned")
        tmux("send-keys", "-t", "e2e:tui", "Enter")
        tmux.wait_for("e2e:tui", "enter sends: 1. Deploy")
        tmux("send-keys", "-t", "e2e:tui", "2")
        tmux.wait_for("e2e:tui", "enter sends: 2. Hold")
        tmux("send-keys", "-t", "e2e:tui", "Enter")
        wait_until(lambda: "ANSWER" in ((tmp_path / "run.out").read_text() if (tmp_path / "run.out").exists()
                                        else ""), "the run's end", timeout=30)
        assert "ANSWER Hold" in (tmp_path / "run.out").read_text()
        assert title() == "e2e-title"
        tmux("send-keys", "-t", "e2e:tui", "q")
        assert wait_for_file(tmp_path / "tui.rc") == "0"


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it with apt-get)")
def test_dashboard_in_tmux_cancels_a_running_process_job_by_keys(tmp_path, home):
    """A graph in another process runs a real process job (a sleeper that prints ``ready``);
    in ``ag tui``: enter opens its run, J its Jobs tab (the job's output followed), c then y (it asks
    first) cancels the job. ``ag jobs --json`` then says cancelled, by the dashboard, and the run reports it."""
    from .test_jobs import GRAPH, script as write_script

    ag_cmd = ag_shell()
    env = f"AETHERGRAPH_HOME={home} TZ=UTC"
    prog = write_script(tmp_path, "graph.py", GRAPH)
    sleeper = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(300)"]
    run_cmd = (f"cd {tmp_path} && env {env} {ag_cmd} run {prog}:sim --json "
               f"--input {shlex.quote(json.dumps({'argv': sleeper}))} < /dev/null > {tmp_path}/run.out "
               f"2> {tmp_path}/run.err; echo $? > {tmp_path}/run.rc")
    with terminal(tmp_path) as (tmux, _):
        tmux.dashboard(tmp_path, home)
        tmux("new-window", "-d", "-t", "e2e", "-n", "run", run_cmd)
        tmux.wait_for("e2e:tui", "RUNNING")
        tmux("send-keys", "-t", "e2e:tui", "Enter")  # open the run
        tmux.wait_for("e2e:tui", "events · pid")  # (its header: "RUN " is a column of the list too)
        tmux("send-keys", "-t", "e2e:tui", "J")
        screen = tmux.wait_for("e2e:tui", "ready")  # the job's stdout, followed
        assert "· stdout" in screen and "RUNNING" in screen, screen
        tmux("send-keys", "-t", "e2e:tui", "c")
        tmux.wait_for("e2e:tui", "Cancel job job-")  # it asks first
        tmux("send-keys", "-t", "e2e:tui", "y")
        tmux.wait_for("e2e:tui", "CANCELLED")
        assert wait_for_file(tmp_path / "run.rc") == "0", (tmp_path / "run.err").read_text()
        tmux("send-keys", "-t", "e2e:tui", "q")
        assert wait_for_file(tmp_path / "tui.rc") == "0"
    jobs = json.loads(ag("jobs", "--json", env={"AETHERGRAPH_HOME": str(home)}).stdout)
    assert [j["state"] for j in jobs] == ["cancelled"], jobs
    from aethergraph.runtime.jobs.store import JobStore

    assert JobStore(home).read(jobs[0]["job_id"]).cancelled_by == "dashboard"
    out = json.loads((tmp_path / "run.out").read_text().strip().splitlines()[-1])
    assert out["outputs"]["state"] == "cancelled" and "ready" in out["outputs"]["output"]
