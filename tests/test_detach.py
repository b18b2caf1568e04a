"""Runs in processes of their own: the dashboard's and the sidecar's resume, ``ag run
--detach`` and ``ag attach``, ``ag run --run-id``, a terminal that hangs up, and ``ag asks`` for
runs that are not live.

Everything here is real: ``ag`` child processes, their stores, their sidecars. Waits on other
processes poll with deadlines (there is no trio clock to jump across processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aethergraph.runtime import events as ev
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_events

from .agproc import start_ag, wait_until
from .conftest import TUTORIAL, ag

pytestmark = pytest.mark.slow

TARGET = f"{TUTORIAL}:submit_poll_notify"
INPUT = json.dumps({"spec": {"name": "toy-sim", "steps": 3}})
DEMO_ENV = {"AG_DEMO_TIME_SCALE": "0.05", "AG_DEMO_FAIL_RATE": "1"}

OTHER = textwrap.dedent("""
    import trio
    from aethergraph import graph_fn

    @graph_fn(name="other")
    async def other(*, context):
        await context.channel().send_text("other: waiting")
        await trio.sleep_forever()
""")


def kill_leftover_runs(home: Path) -> None:
    """A detached run outlives the test that started it by design; one a failed test left
    waiting (on an ask, say) is killed here, so nothing leaks into the next test or the CI box."""
    layout = StoreLayout.at(home)
    for path in layout.iter_logs():
        pid = None
        for e in read_events(path, warn=False):
            if type(e) in (ev.RunStarted, ev.RunResumed):
                pid = e.pid
            elif type(e) is ev.RunFinished:
                pid = None
        if not pid or pid == os.getpid():
            continue
        try:  # only a detached `ag` of this store: a dead run's pid may have been reused since
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"aethergraph.cli" in cmdline and str(home).encode() in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(autouse=True)
def _no_leftover_runs(home):
    yield
    kill_leftover_runs(home)


def events_of(home: Path, run_id: str) -> list[ev.Event]:
    return read_events(StoreLayout.at(home).run_log(run_id), warn=False)


def finished(home: Path, run_id: str) -> ev.RunFinished | None:
    return next((e for e in reversed(events_of(home, run_id)) if type(e) is ev.RunFinished), None)


def interrupted_tutorial_answered_no(tmp_path: Path, home: Path) -> str:
    """The tutorial killed right after its retry ask reached the disk; `no` answered while dead."""
    crashed = ag("run", TARGET, "--input", INPUT, cwd=tmp_path,
                 env={**DEMO_ENV, "AETHERGRAPH_FAULT": "killafter:ask_opened", "AETHERGRAPH_DURABILITY": "strict"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "interrupted"
    (ask,) = [e for e in events_of(home, run["run_id"]) if type(e) is ev.AskOpened]
    answered = ag("answer", ask.ask_id, "no", cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    return run["run_id"]


def start_other_runtime(tmp_path: Path, home: Path) -> tuple[subprocess.Popen, str]:
    """Another `ag run`, live, with a sidecar: the runtime the old resume borrowed."""
    script = tmp_path / "other.py"
    script.write_text(OTHER)
    proc = start_ag("run", f"{script}:other", cwd=tmp_path, env={"AETHERGRAPH_HOME": str(home)})
    from aethergraph.runtime.sidecar.client import find_runtimes

    def its_run():
        if proc.poll() is not None:
            raise AssertionError(f"the other run exited: {proc.stderr.read()}")
        return next((r for a in find_runtimes(str(home)) if a.pid == proc.pid for r in a.runs), None)

    return proc, wait_until(its_run, "the other runtime's run")


# -- A: resume runs in a process of its own ------------------------------------------------------


def test_dashboard_resume_runs_the_tutorial_in_its_own_process(tmp_path, home, monkeypatch):
    """`R` on the interrupted tutorial (its retry ask answered `no` while dead) ends it FAILED
    with the tutorial's own message, in a process of its own — while another runtime is live,
    and is cancelled, meanwhile. (Before: the run was hosted by that other runtime, without the
    tutorial's `jobs` service, and ended with it.)"""
    from textual.widgets import DataTable

    from aethergraph.tui.app import AetherGraphApp

    from .test_tui_pilot import confirm, table_keys
    from .test_tui_support import Notes, drive, until

    for k, v in DEMO_ENV.items():
        monkeypatch.setenv(k, v)  # what the detached resume inherits
    run_id = interrupted_tutorial_answered_no(tmp_path, home)
    other, other_run = start_other_runtime(tmp_path, home)
    app = AetherGraphApp(poll_s=0.2)
    notes = Notes(app)

    async def scenario(pilot):
        import asyncio

        await until(pilot, lambda: app.live_count == 1, "the other runtime, attached")
        await until(pilot, lambda: run_id in table_keys(app, "runs-table"), "the interrupted run")
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index(run_id))
        await pilot.press("R")
        await confirm(pilot, app, f"Resume run {run_id}?")
        # Meanwhile — while the resume's process starts and runs — the other runtime's run is
        # cancelled and that runtime closes.
        cancelled = await asyncio.to_thread(ag, "cancel", other_run, cwd=tmp_path)
        assert cancelled.returncode == 0, cancelled.stderr
        await until(pilot, lambda: notes.has(f"resume started: run {run_id}"), "the resume's start", timeout=60)
        await until(pilot, lambda: app.state.runs[run_id].status == ev.FAILED, "the resumed run's end", timeout=60)

    try:
        drive(app, scenario, timeout=120)
        assert other.wait(timeout=30) == 1  # the other run ended CANCELLED, on its own
    finally:
        other.kill()
    assert finished(home, other_run).status == ev.CANCELLED

    events = events_of(home, run_id)
    (resumed,) = [e for e in events if type(e) is ev.RunResumed]
    assert resumed.pid not in (os.getpid(), other.pid)
    end = events[-1]
    assert type(end) is ev.RunFinished and end.status == ev.FAILED
    assert end.error.type == "GraphFailed" and "failed and was not retried" in end.error.message
    # its console output went to the file beside its log, not to anybody's terminal (its last
    # line written just after its end reached the log, which is what the dashboard saw)
    out = StoreLayout.at(home).run_log(run_id).with_suffix(".out")
    wait_until(lambda: f"run {run_id} failed: GraphFailed: job" in out.read_text(), "the run's last line in its .out")
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    shown = ag("show", run_id, cwd=tmp_path).stdout
    assert f"pid {resumed.pid} on {resumed.host}" in shown


async def test_sidecar_resume_starts_a_process_of_its_own(tmp_path, home):
    """The sidecar's `resume` command spawns `ag resume RUN` detached and says where it runs."""
    import trio

    from aethergraph.runtime.sidecar.client import SidecarClient, SidecarError, find_runtimes

    from .conftest import rt_open

    for k, v in DEMO_ENV.items():
        os.environ[k] = v
    try:
        run_id = await trio.to_thread.run_sync(interrupted_tutorial_answered_no, tmp_path, home)
        async with rt_open(home, sidecar=True):
            (advert,) = find_runtimes(str(home))
            async with SidecarClient.connect(advert, client="tester") as c:
                info = await c.resume(run_id)
                assert info["pid"] != os.getpid() and info["output"].endswith(f"{run_id}.out")
                with trio.fail_after(60):
                    while finished(home, run_id) is None:
                        await trio.sleep(0.05)
                with pytest.raises(SidecarError) as refused:
                    await c.resume(run_id)
                assert refused.value.code == "cannot_resume" and "ag retry" in str(refused.value)
    finally:
        for k in DEMO_ENV:
            os.environ.pop(k, None)
    end = finished(home, run_id)
    assert end.status == ev.FAILED and "failed and was not retried" in end.error.message
    (resumed,) = [e for e in events_of(home, run_id) if type(e) is ev.RunResumed]
    assert resumed.pid == info["pid"]


# -- C: ag asks sees the asks of interrupted runs -------------------------------------------------


def test_asks_lists_the_open_ask_of_an_interrupted_run(tmp_path, home):
    """`ag runs` counts the interrupted run's open ask and `ag answer` takes it offline; `ag
    asks` lists it too, marked, next to a live runtime's (before: "no live runtime")."""
    crashed = ag("run", TARGET, "--input", INPUT, cwd=tmp_path,
                 env={**DEMO_ENV, "AETHERGRAPH_FAULT": "killafter:ask_opened", "AETHERGRAPH_DURABILITY": "strict"})
    assert crashed.returncode == -signal.SIGKILL
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert (run["status"], run["pending_asks"]) == ("interrupted", 1)
    (opened,) = [e for e in events_of(home, run["run_id"]) if type(e) is ev.AskOpened]

    listed = ag("asks", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (row,) = [ln for ln in listed.stdout.splitlines() if opened.ask_id in ln]
    assert run["run_id"] in row and "Retry? (yes/no)" in row
    assert "interrupted: the answer is kept for the resume" in row

    other, other_run = start_other_runtime(tmp_path, home)
    try:
        asks = json.loads(ag("asks", "--json", cwd=tmp_path).stdout)
    finally:
        other.kill()
        other.wait()
    assert [(a["ask_id"], a["run_id"], a["run_status"]) for a in asks] == [
        (opened.ask_id, run["run_id"], "interrupted")]
    assert asks[0]["prompt"] == opened.prompt and asks[0]["kind"] == "text"

    # answered (kept for the resume): no longer pending anywhere
    assert ag("answer", opened.ask_id, "no", cwd=tmp_path).returncode == 0
    assert json.loads(ag("runs", "--json", cwd=tmp_path).stdout)[0]["pending_asks"] == 0
    after = ag("asks", cwd=tmp_path)
    assert after.returncode == 2 and "no interrupted run waits for an answer" in after.stderr


# -- B: idempotent run start by id ------------------------------------------------------------------

NIGHTLY = textwrap.dedent("""
    import os
    from pathlib import Path
    from aethergraph import graph_fn, tool

    def ran(what):
        with Path(os.environ["COUNTER"]).open("a") as f:
            f.write(what + "\\n")

    @tool(outputs=["y"])
    async def work(x: int):
        ran(f"work {x}")
        return x * 10

    @graph_fn(name="nightly")
    async def nightly(x: int, *, context):
        out = await work(x=x)
        await context.memory().record("done", {"y": out["y"]})
        return {"y": out["y"]}

    @graph_fn(name="broken")
    async def broken(x: int):
        ran("broken")
        raise ValueError(f"bad x {x}")
""")


def nightly_script(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "nightly.py"
    script.write_text(NIGHTLY)
    return str(script), tmp_path / "counter.txt"


def ran(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def test_run_id_starts_then_returns_the_recorded_outcome_and_refuses_other_inputs(tmp_path, home):
    script, counter = nightly_script(tmp_path)
    env = {"COUNTER": str(counter)}
    first = ag("run", f"{script}:nightly", "--input", '{"x": 4}', "--run-id", "nightly-2026-12-01", "--json",
               env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"run_id": "nightly-2026-12-01", "status": "succeeded",
                                        "outputs": {"y": 40}, "error": None}
    again = ag("run", f"{script}:nightly", "--input", '{"x": 4}', "--run-id", "nightly-2026-12-01",
               env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"y": 40}
    assert "recorded earlier; nothing ran again" in again.stderr
    assert ran(counter) == ["work 4"]
    other = ag("run", f"{script}:nightly", "--input", '{"x": 5}', "--run-id", "nightly-2026-12-01",
               env=env, cwd=tmp_path)
    assert other.returncode == 2
    assert other.stderr.strip() == ('ag: run nightly-2026-12-01 was started with other inputs: '
                                    'recorded {"x":4}, given {"x":5}')
    graph = ag("run", f"{script}:broken", "--input", '{"x": 4}', "--run-id", "nightly-2026-12-01",
               env=env, cwd=tmp_path)
    assert graph.returncode == 2 and "is a run of graph 'nightly', not 'broken'" in graph.stderr
    assert ran(counter) == ["work 4"]
    # its log has a place of its own, and the store's tools know it
    log = StoreLayout.at(home).run_log("nightly-2026-12-01")
    assert log == home / "runs" / "named" / "nightly-2026-12-01.jsonl" and log.is_file()
    assert ag("show", "nightly-2026-12-01", cwd=tmp_path).returncode == 0
    assert [r["run_id"] for r in json.loads(ag("runs", "--json", cwd=tmp_path).stdout)] == ["nightly-2026-12-01"]
    check = ag("check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    rebuilt = ag("index", "rebuild", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    # a run that failed is not run again either: its recorded failure is the answer
    for _ in range(2):
        failed = ag("run", f"{script}:broken", "--input", '{"x": 1}', "--run-id", "broken-1", env=env, cwd=tmp_path)
        assert failed.returncode == 1 and "ValueError: bad x 1" in failed.stderr
    assert "recorded earlier; nothing ran again" in failed.stderr and "`ag retry broken-1`" in failed.stderr
    assert ran(counter) == ["work 4", "broken"]


@pytest.mark.parametrize("bad", ["../escape", "a/b", "Nightly", ".hidden", "-x", "x" * 101, "sp ace", "é"])
def test_run_id_syntax_is_checked_before_anything_runs(tmp_path, home, bad):
    script, counter = nightly_script(tmp_path)
    out = ag("run", f"{script}:nightly", "--input", '{"x": 1}', f"--run-id={bad}",
             env={"COUNTER": str(counter)}, cwd=tmp_path)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"ag: bad run id {bad!r}: use lower-case letters")
    assert not counter.exists() and not (tmp_path / "escape.jsonl").exists()


def test_run_id_of_an_interrupted_run_resumes_it(tmp_path, home):
    script, counter = nightly_script(tmp_path)
    env = {"COUNTER": str(counter), "AETHERGRAPH_DURABILITY": "strict"}
    crashed = ag("run", f"{script}:nightly", "--input", '{"x": 2}', "--run-id", "resumable-1", cwd=tmp_path,
                 env={**env, "AETHERGRAPH_FAULT": "kill:memory_recorded:done"})
    assert crashed.returncode == -signal.SIGKILL
    assert json.loads(ag("runs", "--json", cwd=tmp_path).stdout)[0]["status"] == "interrupted"
    resumed = ag("run", f"{script}:nightly", "--input", '{"x": 2}', "--run-id", "resumable-1", "--json",
                 env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "was interrupted: resuming it" in resumed.stderr
    assert json.loads(resumed.stdout)["outputs"] == {"y": 20}
    assert ran(counter) == ["work 2"], "the tool that had finished is replayed, not run again"
    events = events_of(home, "resumable-1")
    assert [type(e) for e in events].count(ev.RunResumed) == 1
    assert [type(e) for e in events].count(ev.RunStarted) == 1


def test_api_run_by_id(tmp_path, home, monkeypatch):
    import aethergraph
    from aethergraph.run_by_id import RecordedFailure, RunIdConflict, RunIdError
    from aethergraph.targets import load_target

    script, counter = nightly_script(tmp_path)
    monkeypatch.setenv("COUNTER", str(counter))
    nightly = load_target(f"{script}:nightly")
    broken = load_target(f"{script}:broken")
    aethergraph.start(sidecar=False)
    try:
        assert aethergraph.run(nightly, run_id="api-1", x=3) == {"y": 30}
        assert aethergraph.run(nightly, run_id="api-1", x=3) == {"y": 30}
        assert ran(counter) == ["work 3"]
        with pytest.raises(RunIdConflict, match="other inputs"):
            aethergraph.run(nightly, run_id="api-1", x=4)
        with pytest.raises(ValueError, match="bad x 1"):
            aethergraph.run(broken, run_id="api-broken", x=1)
        with pytest.raises(RecordedFailure, match=r"already ended FAILED \(ValueError: bad x 1 \(in node broken\)\)"):
            aethergraph.run(broken, run_id="api-broken", x=1)
        assert ran(counter) == ["work 3", "broken"]
        with pytest.raises(RunIdError, match="bad run id"):
            aethergraph.run(nightly, run_id="../../etc/passwd", x=3)
    finally:
        from aethergraph import api

        api._DEFAULTS.pop("sidecar", None)


# -- D: walk away and come back ---------------------------------------------------------------------

ASKER = textwrap.dedent("""
    from aethergraph import graph_fn

    @graph_fn(name="asker")
    async def asker(*, context):
        ch = context.channel()
        await ch.send_text("asker: started\x1b]0;retitled\x07")
        name = await ch.ask_text("Your name?")
        await ch.send_text(f"hello {name}")
        return {"name": name}
""")


def test_sighup_to_a_foreground_run_is_recorded_as_its_end(tmp_path, home):
    """A terminal that hangs up: the run ends CANCELLED saying so, never looking alive (before:
    the process died of the signal and the run was left RUNNING in its log)."""
    proc, run_id = start_other_runtime(tmp_path, home)
    try:
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=30) == 129
    finally:
        proc.kill()
    end = finished(home, run_id)
    assert end is not None and end.status == ev.CANCELLED
    assert "terminal hung up (SIGHUP)" in end.error.message
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert run["status"] == "cancelled"


def test_detach_then_attach_answers_and_ctrl_c_only_detaches(tmp_path, home):
    script = tmp_path / "asker.py"
    script.write_text(ASKER)
    started = ag("run", "--detach", f"{script}:asker", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert f"ag attach {run_id}" in started.stderr and f"ag tail {run_id}" in started.stderr
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert run["run_id"] == run_id and run["status"] == "running"
    pid = run["pid"]
    assert os.getsid(pid) == pid, "the run leads a session of its own: no terminal can hang it up"
    out = StoreLayout.at(home).run_log(run_id).with_suffix(".out")
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    wait_until(lambda: json.loads(ag("asks", "--json", cwd=tmp_path).stdout), "its ask")

    # Ctrl-C in `ag attach` detaches; the run goes on, its ask still open.
    attach = start_ag("attach", run_id, cwd=tmp_path, stdin=subprocess.PIPE)
    try:
        seen = []
        while not any("attached to run" in ln for ln in seen):
            line = attach.stdout.readline()
            assert line, attach.stderr.read()
            seen.append(line)
        assert any("Your name?" in ln for ln in seen)
        attach.send_signal(signal.SIGINT)
        _, err = attach.communicate(timeout=30)
    finally:
        attach.kill()
    assert attach.returncode == 0 and f"detached from run {run_id}; it goes on" in err
    assert json.loads(ag("runs", "--json", cwd=tmp_path).stdout)[0]["status"] == "running"

    # A second attach answers: the first line is refused by the runtime's own check, the next taken.
    answered = subprocess.run([sys.executable, "-m", "aethergraph.cli", "attach", run_id], cwd=tmp_path,
                              input="\nAda\n", capture_output=True, text=True, timeout=60)
    assert answered.returncode == 0, answered.stderr
    assert "✗ " in answered.stdout and "hello Ada" in answered.stdout
    assert "asker: started]0;retitled" in answered.stdout and "\x1b" not in answered.stdout  # run text is untrusted
    assert f"run {run_id} succeeded" in answered.stderr
    end = finished(home, run_id)
    assert end.status == ev.SUCCEEDED and end.outputs == {"name": "Ada"}
    assert "hello Ada" in out.read_text()
    gone = ag("attach", run_id, cwd=tmp_path)
    assert gone.returncode == 2 and "is not running (SUCCEEDED)" in gone.stderr


def test_detach_over_ssh_survives_the_dropped_login_and_attach_answers_from_a_new_one(tmp_path, home):
    """The users' way: log in, `ag run --detach`, the login drops (its processes get the
    hang-up); the run goes on. A new login `ag attach`es in a real terminal (tmux), answers the
    run's ask by keys, and the run finishes."""
    from .agproc import SSH, SSHD, TMUX, Sshd, Tmux, ag_shell, wait_for_file

    if TMUX is None or not (SSH and SSHD):
        pytest.skip("tmux, ssh or sshd is not installed (.ci/run installs them with apt-get)")
    script = tmp_path / "asker.py"
    script.write_text(ASKER)
    ag_cmd = ag_shell()
    env = f"AETHERGRAPH_HOME={home} TZ=UTC"
    sshd = Sshd(tmp_path)
    tmux = Tmux(tmp_path)
    try:
        first = sshd.command(
            f"cd {tmp_path} && echo $$ > login1.pid && env {env} {ag_cmd} run --detach {script}:asker "
            f"> run_id.txt 2> detach.err; sleep 600")
        # A window that stays, so the session outlives the login window we close.
        tmux("new-session", "-d", "-s", "walk", "-n", "hold", "-x", "100", "-y", "30", "sleep 600")
        tmux("new-window", "-d", "-t", "walk", "-n", "login1", first)
        run_id = wait_for_file(tmp_path / "run_id.txt")
        login_shell = int(wait_for_file(tmp_path / "login1.pid"))
        wait_until(lambda: json.loads(ag("asks", "--json", cwd=tmp_path).stdout), "the run's ask")
        (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
        assert run["run_id"] == run_id and run["status"] == "running"

        tmux("kill-window", "-t", "walk:login1")  # the login drops: its terminal hangs up
        wait_until(lambda: not _alive(login_shell), "the dropped login's shell to end")
        (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
        assert run["status"] == "running" and _alive(run["pid"]), "the detached run survives the drop"

        tmux("new-window", "-d", "-t", "walk", "-n", "login2", sshd.command(
            f"export TERM=xterm-256color; cd {tmp_path} && env {env} {ag_cmd} attach {run_id}; "
            f"echo $? > attach.rc; sleep 600"))
        screen = tmux.wait_for("walk:login2", "the run goes on) —\n>")  # the prompt (tmux strips its space)
        assert "Your name?" in screen and "asker: started" in screen
        tmux("send-keys", "-t", "walk:login2", "-l", "Ada")
        tmux("send-keys", "-t", "walk:login2", "Enter")
        assert wait_for_file(tmp_path / "attach.rc") == "0"
        assert "hello Ada" in tmux.screen("walk:login2")
    finally:
        tmux.kill()
        sshd.stop()
    assert sshd.log.read_text().count("Accepted publickey") >= 2  # two real logins
    end = finished(home, run_id)
    assert end.status == ev.SUCCEEDED and end.outputs == {"name": "Ada"}
    (answer,) = [e for e in events_of(home, run_id) if type(e) is ev.AskAnswered]
    assert answer.by == "ag attach (sidecar)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_resume_detach(tmp_path, home):
    run_id = interrupted_tutorial_answered_no(tmp_path, home)
    started = ag("resume", run_id, "--detach", env=DEMO_ENV, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == run_id and f"ag attach {run_id}" in started.stderr
    end = wait_until(lambda: finished(home, run_id), "the resumed run's end")
    assert end.status == ev.FAILED and "failed and was not retried" in end.error.message
    again = ag("resume", run_id, "--detach", cwd=tmp_path)
    assert again.returncode == 2 and "ag retry" in again.stderr


def test_a_detached_process_that_cannot_take_the_run_is_reported_in_its_own_words(tmp_path, home):
    script, counter = nightly_script(tmp_path)
    crashed = ag("run", f"{script}:nightly", "--input", '{"x": 2}', cwd=tmp_path,
                 env={"COUNTER": str(counter), "AETHERGRAPH_DURABILITY": "strict",
                      "AETHERGRAPH_FAULT": "kill:memory_recorded:done"})
    assert crashed.returncode == -signal.SIGKILL
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    Path(script).unlink()  # the code is gone: the new process cannot import it
    out = ag("resume", run["run_id"], "--detach", cwd=tmp_path)
    assert out.returncode == 2
    assert f"exited with 2 before it took run {run['run_id']}" in out.stderr
    assert "nightly.py" in out.stderr  # what the process itself said
    assert json.loads(ag("runs", "--json", cwd=tmp_path).stdout)[0]["status"] == "interrupted"
