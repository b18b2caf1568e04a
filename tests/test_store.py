"""The store's parts: log reading and repair, blobs, kv, memory through the index."""

from __future__ import annotations

import logging

import pytest

from aethergraph import StoreError, graph_fn
from aethergraph.runtime import events as ev
from aethergraph.runtime.store.artifacts import BlobStore, check_name, sha_from_ref
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.kv import KVStore
from aethergraph.runtime.store.logfile import complete_size, read_events, read_log, repair_torn_tail

from .conftest import rt_open



def line(seq: int, kind: str = "k") -> bytes:
    return ev.encode(ev.MemoryRecorded(run_id="20261125-000000-aaaaaa", seq=seq, ts=float(seq), event_id=f"e{seq}", kind=kind)) + b"\n"


def test_torn_tail_is_not_read_and_is_repaired(tmp_path):
    path = tmp_path / "20261125-000000-aaaaaa.jsonl"
    whole = line(1) + line(2)
    path.write_bytes(whole + line(3)[:17])
    assert [e.seq for e in read_events(path)] == [1, 2]
    assert complete_size(path) == len(whole)
    assert repair_torn_tail(path) == 17
    assert path.read_bytes() == whole
    assert repair_torn_tail(path) == 0


def test_corrupt_and_non_utf8_lines_are_skipped_with_file_and_line(tmp_path, caplog):
    path = tmp_path / "20261125-000000-aaaaaa.jsonl"
    path.write_bytes(line(1) + b"{not json\n" + b"\xff\xfe\x00garbage\n" + b'{"type":"nope","run_id":"x"}\n' + line(5))
    bad = []
    with caplog.at_level(logging.WARNING, logger="aethergraph.store"):
        events = read_events(path, bad_lines=bad)
    assert [e.seq for e in events] == [1, 5]
    assert [b.line_no for b in bad] == [2, 3, 4]
    assert f"{path}:line 2: skipped unreadable line" in caplog.text
    assert f"{path}:line 3" in caplog.text


def test_reading_from_an_offset(tmp_path):
    path = tmp_path / "20261125-000000-aaaaaa.jsonl"
    path.write_bytes(line(1) + line(2) + line(3))
    recs = list(read_log(path))
    later = list(read_log(path, start=recs[1].offset))
    assert [r.event.seq for r in later] == [2, 3]
    assert later[0].line == line(2).rstrip(b"\n")


@pytest.mark.parametrize(
    "name", ["../escape.txt", "/etc/passwd", "a/../../b", "nul\x00byte", "", "C:\\x", "dir/", "./x", "a\\b"]
)
def test_artifact_names_cannot_escape(name):
    with pytest.raises(StoreError):
        check_name(name)


def test_artifact_names_allowed():
    for name in ["spec.json", "results/2026/out.txt", "ünïcode name.txt"]:
        assert check_name(name) == name


def test_blobs_are_content_addressed_and_deduplicated(layout):
    layout.ensure()
    blobs = BlobStore(layout)
    a = blobs.put_bytes(b"hello")
    b = blobs.put_bytes(b"hello")
    assert a == b and blobs.read_bytes(a) == b"hello"
    assert blobs.path_for(a).parent.parent.name == a[:2]
    assert list(layout.tmp_dir.iterdir()) == []
    with pytest.raises(StoreError, match="not an artifact ref"):
        sha_from_ref("ag://artifact/../../etc/passwd")
    with pytest.raises(StoreError, match="not in this store"):
        blobs.read_bytes("0" * 64)


async def test_artifacts_api_round_trip_and_provenance(home, layout, tmp_path):
    user_file = tmp_path / "data.csv"
    user_file.write_text("a,b\n1,2\n")

    @graph_fn(name="g")
    async def g(*, context):
        arts = context.artifacts()
        r1 = await arts.write_text("notes.txt", content="hi")
        r2 = await arts.save_json("cfg.json", {"k": [1, 2]})
        r3 = await arts.save(user_file, labels={"split": "train"})
        with pytest.raises(StoreError):
            await arts.write_text("../evil", content="x")
        listed = await arts.list()
        with arts.open(r3) as f:
            assert f.read() == b"a,b\n1,2\n"
        return r1, r2, r3, await arts.read_text(r1), await arts.load_json(r2), await arts.load_bytes(r3), listed

    async with rt_open(home):
        r1, r2, r3, text, obj, raw, listed = await g()
    assert text == "hi" and obj == {"k": [1, 2]} and raw == b"a,b\n1,2\n"
    assert user_file.exists(), "save() must copy, never move"
    assert {a.name for a in listed} == {"notes.txt", "cfg.json", "data.csv"}
    csv = next(a for a in listed if a.name == "data.csv")
    assert (csv.node, csv.size, csv.labels, csv.mime) == ("g", 8, {"split": "train"}, "text/csv")


def test_kv_namespaces_ttl_and_lists(layout):
    now = [1000.0]
    kv = KVStore(layout, clock=lambda: now[0])
    kv.set("a", "k", {"v": 1})
    kv.set("b", "k", 2, ttl_s=10)
    assert kv.get("a", "k") == {"v": 1} and kv.get("b", "k") == 2
    now[0] += 10.5
    assert kv.get("b", "k", "gone") == "gone"
    assert kv.purge_expired() == 1
    kv.mset("a", {"x": 1, "y": 2})
    assert kv.mget("a", ["x", "y", "z"]) == [1, 2, None]
    assert kv.list_append_unique("a", "l", [1, 2]) == [1, 2]
    assert kv.list_append_unique("a", "l", [2, 3]) == [1, 2, 3]
    assert kv.list_pop_all("a", "l") == [1, 2, 3] and kv.list_pop_all("a", "l") == []
    assert kv.expire("a", "x", 5) and not kv.expire("a", "missing", 5)
    now[0] += 6
    assert kv.get("a", "x") is None
    assert kv.delete("a", "y") and not kv.delete("a", "y")
    kv.close()


async def test_kv_persists_across_runtimes(home):
    @graph_fn(name="w")
    async def w(*, context):
        await context.kv("ns").set("answer", 42)

    @graph_fn(name="r")
    async def r(*, context):
        return await context.kv("ns").get("answer"), await context.kv().get("answer", "other-ns")

    async with rt_open(home):
        await w()
    async with rt_open(home):
        assert await r() == (42, "other-ns")


async def test_memory_recent_sees_own_writes_and_earlier_runs(home, layout):
    @graph_fn(name="g")
    async def g(n, *, context):
        mem = context.memory()
        for i in range(n):
            await mem.record("step", {"i": i}, tags=["t"], metrics={"loss": 1.0 / (i + 1)})
        await mem.record("other", {"x": 1})
        return [e.data["i"] for e in await mem.recent(kinds=["step"], limit=3)]

    async with rt_open(home):
        assert await g(5) == [2, 3, 4]  # oldest first
    async with rt_open(home):
        # a new runtime sees the earlier run (default scope: this graph)
        assert await g(1) == [3, 4, 0]

    index = Index(layout)
    assert index.memory_count() == 8
    rows = index.memory(kinds=["step"], text="step", limit=100)
    assert len(rows) == 6 and rows[0].metrics == {"loss": 1.0}
    index.close()


async def test_strict_durability_record_returns_after_fsync(home, layout):
    @graph_fn(name="g")
    async def g(*, context):
        e = await context.memory().record("durable", {"n": 1})
        # the line is in the file now, while the run is still going
        path = layout.run_log(context.run_id)
        return e.event_id, path.read_bytes()

    async with rt_open(home, durability="strict"):
        event_id, content = await g()
    assert event_id.encode() in content


async def test_index_catches_up_after_losing_its_tail(home, layout):
    @graph_fn(name="g")
    async def g(*, context):
        for i in range(10):
            await context.memory().record("k", {"i": i})

    async with rt_open(home):
        await g()
    # Simulate a crash after the log write but before indexing: forget the index entirely.
    for suffix in ("", "-wal", "-shm"):
        p = layout.index_path.with_name(layout.index_path.name + suffix)
        if p.exists():
            p.unlink()
    index = Index(layout)
    assert index.memory_count() == 0
    assert index.catch_up() >= 10
    assert index.memory_count() == 10
    assert index.catch_up() == 0  # idempotent
    index.close()


async def test_artifact_search_best_and_pin(home):
    @graph_fn(name="train")
    async def train(*, context):
        arts = context.artifacts()
        refs = []
        for lr, acc in [(0.1, 0.71), (0.01, 0.93), (0.001, 0.88)]:
            refs.append(await arts.write_text(f"model-{lr}.txt", content=f"lr={lr}", kind="model",
                                              labels={"lr": lr, "arch": "mlp"}, metrics={"acc": acc}))
        await arts.write_text("notes.txt", content="n", kind="note")
        best = await arts.best(kind="model", metric="acc")
        worst = await arts.best(kind="model", metric="acc", mode="min")
        mlp = await arts.search(kind="model", labels={"arch": "mlp"})
        one = await arts.search(labels={"lr": 0.001})
        await arts.pin(best.ref)
        with pytest.raises(StoreError):
            await arts.pin("ag://artifact/" + "0" * 64)
        return best, worst, mlp, one, await arts.is_pinned(best.ref), await arts.is_pinned(worst.ref)

    async with rt_open(home):
        best, worst, mlp, one, best_pinned, worst_pinned = await train()
    assert best.name == "model-0.01.txt" and best.metrics == {"acc": 0.93}
    assert worst.name == "model-0.1.txt"
    assert len(mlp) == 3 and [a.name for a in one] == ["model-0.001.txt"]
    assert best_pinned and not worst_pinned


async def test_memory_query_filters(home):
    @graph_fn(name="g")
    async def g(*, context):
        mem = context.memory()
        await mem.record("obs", {"t": "alpha beta"}, tags=["a", "b"], entities=["job:1"])
        await mem.record("obs", {"t": "beta gamma"}, tags=["a"], entities=["job:2"])
        await mem.record("note", "free text about gamma", tags=["b"])
        await mem.write_result("fit", inputs={"x": 1}, outputs={"y": 2}, metrics={"loss": 0.5})
        q = mem.query
        return {
            "kind": [e.data for e in await q(kinds=["obs"], order="asc")],
            "tags_all": [e.data for e in await q(tags=["a", "b"])],
            "entity": [e.data for e in await q(entities=["job:2"])],
            "text": sorted(str(e.data) for e in await q(text="gamma")),
            "text_and": [e.data for e in await q(text="alpha beta")],
            "unknown": await q(kinds=["never-recorded"]),
            "last_outputs": await mem.last_outputs_by_topic("fit"),
            "last_by_name": (await mem.last_by_name("note")).data,
            "recent_data": await mem.recent_data(["obs"], 1),
        }

    async with rt_open(home):
        out = await g()
    assert out["kind"] == [{"t": "alpha beta"}, {"t": "beta gamma"}]
    assert out["tags_all"] == [{"t": "alpha beta"}]
    assert out["entity"] == [{"t": "beta gamma"}]
    assert out["text"] == ["free text about gamma", "{'t': 'beta gamma'}"]
    assert out["text_and"] == [{"t": "alpha beta"}]
    assert out["unknown"] == []
    assert out["last_outputs"] == {"y": 2}
    assert out["last_by_name"] == "free text about gamma"
    assert out["recent_data"] == [{"t": "beta gamma"}]


async def test_bad_record_arguments_are_clear_errors(home):
    @graph_fn(name="g")
    async def g(*, context):
        mem = context.memory()
        with pytest.raises(ValueError, match="kind must be a non-empty string"):
            await mem.record("")
        with pytest.raises(TypeError, match="metric 'acc' must be a number"):
            await mem.record("k", metrics={"acc": "high"})
        with pytest.raises(TypeError, match="tags must be a list of strings"):
            await mem.record("k", tags="oops")
        with pytest.raises(ValueError, match="scope must be one of"):
            await mem.recent(scope="galaxy")
        return (await mem.recent(scope="run"))

    async with rt_open(home):
        assert await g() == []
