"""The index in a process of its own (runtime/store/indexproc.py): the same answers as the
index the runtime's own thread keeps, indexing left to that thread when the process dies, and
the process's end with the runtime (or with its pipe, as when the runtime is killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from aethergraph import graph_fn
from aethergraph.runtime.events import MemoryRecorded
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.indexproc import IndexProcess
from aethergraph.runtime.store.logfile import complete_size, read_events

from .conftest import rt_open

N = 3_000


@graph_fn(name="recorder")
async def recorder(n, *, context):
    mem = context.memory()
    for i in range(n):
        await mem.record(f"k{i % 10}", {"i": i, "w": "alpha" if i % 3 == 0 else i},
                         tags=["t"] if i % 7 == 0 else None)
    return [e.data["i"] for e in await mem.query(kinds=["k3"], limit=20, scope="run")]


def expected(n: int) -> list[int]:
    return [i for i in range(n - 1, -1, -1) if i % 10 == 3][:20]


def answers(index: Index) -> tuple:
    return (
        [e.event_id for e in index.memory(kinds=["k3"])],
        [e.event_id for e in index.memory(tags=["t"], kinds=["k0"])],
        [e.event_id for e in index.memory(text="alpha", limit=100)],
        index.memory_count(),
        [(r.run_id, r.status, r.events, r.last_seq) for r in index.runs()],
    )


async def test_the_index_process_answers_as_the_index_rebuilt_from_the_logs(home, layout):
    async with rt_open(home) as rt:
        rt.writer.index_process_after = 0  # from the first batch on
        assert await recorder(n=N) == expected(N)
        proc = rt.writer._indexer
        assert proc is not None and proc.proc.poll() is None
        assert await recorder(n=N) == expected(N)  # a second run, the same process
    assert proc.proc.returncode == 0  # it ended with the runtime
    index = Index(layout)
    try:
        kept = answers(index)
        assert kept[3] == 2 * N
        index.rebuild()  # what the runtime's own thread would have indexed
    finally:
        index.close()
    index = Index(layout)  # a fresh one: the file ids the rebuild gave the logs are new
    try:
        assert answers(index) == kept
    finally:
        index.close()


async def test_a_dead_index_process_leaves_indexing_to_the_runtime(home):
    async with rt_open(home) as rt:
        rt.writer.index_process_after = 0
        assert await recorder(n=500) == expected(500)
        proc = rt.writer._indexer
        proc.proc.kill()
        proc.proc.wait()
        assert await recorder(n=N) == expected(N)
        assert rt.writer._indexer is None
        assert rt.index.memory_count() == 500 + N


async def test_the_index_process_ends_when_its_pipe_closes(home, layout):
    """What a kill -9 of the runtime does to it: its stdin closes; it exits, index whole."""
    async with rt_open(home) as rt:
        rt.writer.index_process_after = None  # indexed here; the process below catches up
        await recorder(n=N)
    index = Index(layout)
    try:
        marks = index.indexed_marks()
        index._w.execute("DELETE FROM logs")  # forget the marks: every byte is to be indexed again
        index._w.execute("DELETE FROM memory")
        index._w.execute("INSERT INTO memory_fts(memory_fts) VALUES ('delete-all')")
        index._w.execute("DELETE FROM memory_tags")
        proc = IndexProcess(home)
        lines = sum(len(read_events(layout.home / rel)) for rel in marks)
        assert proc.index(list(marks.items())) == lines
        proc.proc.stdin.close()
        assert proc.proc.wait(timeout=60) == 0
        proc.proc.stdout.close()
        assert index.indexed_marks() == marks
        assert index.memory_count() == N
    finally:
        index.close()


async def test_strict_indexes_in_the_runtime_before_it_acknowledges(home):
    async with rt_open(home, durability="strict") as rt:
        assert rt.writer.index_process_after is None
        assert await recorder(n=50) == expected(50)
        assert rt.writer._indexer is None


KILLED = textwrap.dedent(
    """
    import sys, trio
    from aethergraph import graph_fn, open_runtime

    @graph_fn(name="recorder")
    async def recorder(*, context):
        mem = context.memory()
        writer = context.memory()._writer
        i = 0
        while True:
            await mem.record(f"k{i % 10}", {"i": i, "w": "alpha"})
            i += 1
            if i == 5_000:
                await mem.query(kinds=["k1"], limit=1)  # indexed by the process by now
                print(writer._indexer.proc.pid, flush=True)

    async def main():
        async with open_runtime(home=sys.argv[1], console=False, sidecar=False) as rt:
            rt.writer.index_process_after = 0
            await recorder()

    trio.run(main)
    """
)


def test_the_index_process_ends_after_its_runtime_is_killed(home, layout, tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    runtime = subprocess.Popen([sys.executable, str(script), str(home)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(runtime.stdout.readline())
    finally:
        runtime.send_signal(signal.SIGKILL)
        runtime.wait()
        runtime.stdout.close()
    deadline = time.monotonic() + 60
    while _alive(child):  # its pipe closed with the runtime: it ends its transaction and exits
        assert time.monotonic() < deadline, "the index process outlived its runtime"
        time.sleep(0.01)
    index = Index(layout)
    try:
        for rel, mark in index.indexed_marks().items():  # never past what the log holds
            assert mark <= complete_size(layout.home / rel)
        index.catch_up()
        recorded = [e for p in layout.iter_logs() for e in read_events(p) if type(e) is MemoryRecorded]
        assert index.memory_count() == len(recorded) >= 5_000
    finally:
        index.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its dead parent's reaper) counts as ended.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_catch_up_to_takes_lines_longer_than_its_chunk(home, layout, monkeypatch):
    from aethergraph.runtime.store import index as index_mod

    @graph_fn(name="padded")
    async def padded(*, context):
        mem = context.memory()
        for i in range(200):
            await mem.record(f"k{i % 10}", {"i": i, "pad": "x" * (3000 if i % 5 == 0 else 10)})

    async with rt_open(home) as rt:
        rt.writer.index_process_after = None
        await padded()
    monkeypatch.setattr(index_mod, "CHUNK", 1000)  # every fifth line is longer
    index = Index(layout)
    try:
        marks = index.indexed_marks()
        kept = answers(index)
        for table in ("logs", "runs", "memory", "memory_tags"):
            index._w.execute(f"DELETE FROM {table}")
        index._w.execute("INSERT INTO memory_fts(memory_fts) VALUES ('delete-all')")
        index.catch_up_to(list(marks.items()))
        assert index.indexed_marks() == marks
    finally:
        index.close()
    index = Index(layout)
    try:
        assert answers(index) == kept
    finally:
        index.close()
