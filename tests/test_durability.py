"""Durability with real processes: kill -9, torn lines, many writers, memory across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from aethergraph.runtime import events as ev
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import complete_size, read_events

from .conftest import ag, crash_run

pytestmark = pytest.mark.slow

RECORDER = textwrap.dedent(
    """
    import sys, trio
    from aethergraph import graph_fn, open_runtime

    home, durability, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pad = "x" * size

    @graph_fn(name="recorder")
    async def recorder(*, context):
        mem = context.memory()
        i = 0
        while count < 0 or i < count:
            e = await mem.record(f"k{i % 10}", {"i": i, "pad": pad}, tags=["crash"])
            # Acknowledged: record() returned. Tell the parent which event that was.
            print(e.event_id, flush=True)
            i += 1
            if i % 50 == 0:
                await trio.sleep(0)

    async def main():
        async with open_runtime(home=home, durability=durability, console=False):
            await recorder()

    trio.run(main)
    """
)

READER = textwrap.dedent(
    """
    import sys, json, trio
    from aethergraph import graph_fn, open_runtime

    @graph_fn(name="recorder")
    async def reader(*, context):
        mem = context.memory()
        return [e.data["i"] for e in await mem.recent(kinds=["k3"], limit=5)]

    async def main():
        async with open_runtime(home=sys.argv[1], console=False):
            print(json.dumps(await reader()))

    trio.run(main)
    """
)


@pytest.fixture
def scripts(tmp_path):
    rec = tmp_path / "recorder.py"
    rec.write_text(RECORDER)
    rd = tmp_path / "reader.py"
    rd.write_text(READER)
    return rec, rd


def start_recorder(script, home, durability="strict", count=-1, size=16):
    return subprocess.Popen(
        [sys.executable, str(script), str(home), durability, str(count), str(size)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def only_log(layout):
    (path,) = list(layout.iter_logs())
    return path


def memory_ids(path):
    return [e.event_id for e in read_events(path) if isinstance(e, ev.MemoryRecorded)]


def reopen_store(home):
    """What the next runtime (or any reader) does on open: catch the index up."""
    index = Index(StoreLayout.at(home))
    index.catch_up()
    return index


def test_kill_9_keeps_every_acknowledged_event_strict(scripts, home, layout, tmp_path):
    rec, _ = scripts
    proc = start_recorder(rec, home, "strict")
    acked = []
    while len(acked) < 200:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        acked.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    acked += [x for x in rest.split() if x]
    assert proc.returncode == -signal.SIGKILL

    path = only_log(layout)
    in_log = memory_ids(path)
    assert set(acked) <= set(in_log), "an acknowledged (strict) event was lost"
    # The run never finished: it shows as interrupted, not running.
    runs = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert runs[0]["status"] == "interrupted"

    index = reopen_store(home)
    assert index.memory_count() == len(in_log)
    assert [e.event_id for e in index.memory(order="asc", limit=None)] == in_log
    index.close()
    check = ag("check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_kill_9_during_large_writes_leaves_a_readable_log(scripts, home, layout):
    rec, _ = scripts
    for delay in (0.3, 0.6, 0.9):
        proc = start_recorder(rec, home, "off", -1, 4 << 20)
        assert proc.stdout.readline()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    before = {path: path.read_bytes() for path in layout.iter_logs()}
    index = reopen_store(home)
    total = 0
    for path in layout.iter_logs():
        # A reader never writes a log: a torn tail stays until the run's next owner cuts it.
        assert path.read_bytes() == before[path]
        total += len(memory_ids(path))
    assert index.memory_count() == total > 0
    index.close()


PIPELINE = textwrap.dedent(
    """
    from aethergraph import graph_fn

    @graph_fn(name="pipeline")
    async def pipeline(*, context):
        mem = context.memory()
        for i in range(20):
            await mem.record(f"k{i}", {"i": i})
        return {"n": 20}
    """
)


def test_torn_tail_is_reported_left_to_readers_then_cut_by_the_resume(home, layout, tmp_path):
    crash_run(tmp_path, "pipeline.py", PIPELINE, "pipeline", "killafter:memory_recorded:k5")
    path = only_log(layout)
    before = memory_ids(path)
    with open(path, "ab") as f:  # what a write cut short by the kill looks like
        f.write(b'{"type":"memory_recorded","event_id":"ev-torn","ki')
    assert complete_size(path) < path.stat().st_size

    check = ag("check", cwd=tmp_path)
    assert check.returncode == 1
    assert "torn last line" in check.stdout and "ag resume" in check.stdout
    assert path.read_bytes().endswith(b'"ki'), "check must report, never fix"

    index = reopen_store(home)  # any reader (ag runs, the dashboard, a runtime opening)
    assert path.read_bytes().endswith(b'"ki'), "a reader must never write a log"
    assert index.memory_count() == len(before)
    index.close()

    resumed = ag("resume", path.stem, cwd=tmp_path)  # the owner cuts the tail, then appends
    assert resumed.returncode == 0, resumed.stderr
    assert b"ev-torn" not in path.read_bytes()
    assert memory_ids(path)[: len(before)] == before and len(memory_ids(path)) == 20
    assert ag("check", cwd=tmp_path).returncode == 0


def test_two_processes_write_one_store_at_once(scripts, home, layout, tmp_path):
    rec, _ = scripts
    procs = [start_recorder(rec, home, "batch", 3000) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err
        assert len(out.split()) == 3000
    index = reopen_store(home)
    assert index.memory_count() == 6000
    runs = index.runs()
    assert len(runs) == 2 and {r.status for r in runs} == {"succeeded"}
    index.close()
    assert ag("check", cwd=tmp_path).returncode == 0


def test_memory_is_visible_to_a_later_process(scripts, home):
    rec, rd = scripts
    writer = start_recorder(rec, home, "batch", 40)
    writer.communicate(timeout=60)
    assert writer.returncode == 0
    out = subprocess.run([sys.executable, str(rd), str(home)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # the k3 events (i % 10 == 3) the other process recorded, oldest first
    assert json.loads(out.stdout) == [3, 13, 23, 33]


def test_rebuild_gives_identical_answers(scripts, home, layout, tmp_path):
    rec, _ = scripts
    for _ in range(2):
        p = start_recorder(rec, home, "batch", 500)
        p.communicate(timeout=60)
    index = reopen_store(home)

    def answers():
        return (
            [e.event_id for e in index.memory(kinds=["k3"], limit=50)],
            [e.event_id for e in index.memory(tags=["crash"], limit=20)],
            [e.event_id for e in index.memory(text="k7", limit=20)],
            [e.event_id for e in index.memory(limit=None, order="asc")],
            [(r.run_id, r.status, r.events) for r in index.runs()],
        )

    before = answers()
    index.close()
    rebuilt = ag("index", "rebuild", cwd=tmp_path)
    assert rebuilt.returncode == 0 and "rebuilt the index" in rebuilt.stdout
    index = Index(layout)
    assert answers() == before
    assert len(before[3]) == 1000
    index.close()


def test_check_reports_corrupt_lines_and_index_still_reads_the_rest(scripts, home, layout, tmp_path):
    rec, _ = scripts
    p = start_recorder(rec, home, "batch", 30)
    p.communicate(timeout=60)
    path = only_log(layout)
    lines = path.read_bytes().split(b"\n")
    lines.insert(5, b"\xff\xfe not json at all")
    path.write_bytes(b"\n".join(lines))
    check = ag("check", cwd=tmp_path)
    assert check.returncode == 1
    assert f"{path.relative_to(home)}:line 6: unreadable line skipped" in check.stdout
    rebuilt = ag("index", "rebuild", cwd=tmp_path)
    assert rebuilt.returncode == 0
    assert "line 6" in rebuilt.stderr
    index = Index(layout)
    assert index.memory_count() == 30
    index.close()
