"""memory().search: nearest records by a user's embedder, over a vector index derived from the
log (rebuilt by `ag index rebuild`), never doubled by a resume; without an embedder, as before."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import textwrap

import pytest

from aethergraph import graph_fn
from aethergraph.memory import NoEmbedder
from aethergraph.runtime import events as ev
from aethergraph.runtime.store import vectors
from aethergraph.runtime.store.logfile import read_events

from .conftest import ag, crash_run, rt_open, run_events

DIM = 256


def toy_embed(text: str) -> list[float]:
    """A deterministic hashed bag of words: texts sharing words point the same way."""
    v = [0.0] * DIM
    for word in re.findall(r"[a-z]+", text.lower()):
        v[int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % DIM] += 1.0
    return v if any(v) else [1.0] + [0.0] * (DIM - 1)


NOTES = [
    ("note", "cats purr and sleep in the sun"),
    ("note", "the rocket engine burned for ten seconds"),
    ("note", "dogs bark at the mail carrier"),
    ("fact", "cats and dogs are common pets"),
    ("log", "cats purr"),  # a kind not bound: never embedded
]


def vector_rows(layout) -> int:
    c = sqlite3.connect(layout.index_path)
    try:
        return c.execute("SELECT count(*) FROM memory_vectors").fetchone()[0]
    finally:
        c.close()


@pytest.fixture(params=["numpy", "python"])
def scan(request, monkeypatch):
    """Both scans: numpy's matrix product (when installed) and the plain-Python one."""
    if request.param == "numpy":
        if vectors._numpy() is None:
            pytest.skip("numpy (the rag extra) is not installed")
    else:
        monkeypatch.setattr(vectors, "_np", None)
    return request.param


async def record_notes(home):
    @graph_fn(name="notes")
    async def notes(*, context):
        mem = context.memory()
        mem.bind_embedder(toy_embed, kinds=["note", "fact"], name="toy")
        for kind, text in NOTES:
            await mem.record(kind, text=text)
        return {
            "purr": [e.text for e in await mem.search("cats purr", k=2)],
            "notes_only": [e.text for e in await mem.search("cats and dogs", k=5, kinds=["note"])],
            "scored": [(round(s, 6), e.kind) for s, e in await mem.search("rocket", k=1, with_scores=True)],
        }

    async with rt_open(home):
        return await notes()


async def test_search_returns_the_nearest_records(home, layout, scan):
    out = await record_notes(home)
    assert out["purr"] == ["cats purr and sleep in the sun", "cats and dogs are common pets"]
    # only the kind asked for (the "fact" is nearer), and the unbound "log" kind has no vector
    assert out["notes_only"] == ["cats purr and sleep in the sun", "dogs bark at the mail carrier",
                                 "the rocket engine burned for ten seconds"]
    assert out["scored"][0][1] == "note" and 0 < out["scored"][0][0] <= 1
    assert vector_rows(layout) == 4


async def test_search_survives_ag_index_rebuild_and_a_new_process(home, layout, tmp_path, scan):
    await record_notes(home)
    rebuilt = ag("index", "rebuild", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert vector_rows(layout) == 4

    @graph_fn(name="notes")
    async def ask_again(*, context):
        mem = context.memory()
        mem.bind_embedder(toy_embed, kinds=["note", "fact"], name="toy")
        return [e.text for e in await mem.search("cats purr", k=2)]

    async with rt_open(home):
        assert await ask_again() == ["cats purr and sleep in the sun", "cats and dogs are common pets"]


async def test_without_an_embedder_search_says_how_to_bind_one_and_memory_works_as_before(home, layout):
    @graph_fn(name="plain")
    async def plain(*, context):
        mem = context.memory()
        await mem.record("note", text="cats purr")
        with pytest.raises(NoEmbedder, match=r"bind_embedder\(fn, kinds=\[\.\.\.\]\)"):
            await mem.search("cats")
        return [e.text for e in await mem.query(text="purr")]

    async with rt_open(home):
        assert await plain() == ["cats purr"]
    (path,) = list(layout.iter_logs())
    (rec,) = [e for e in run_events(layout, path.stem) if isinstance(e, ev.MemoryRecorded)]
    assert rec.embedding is None and b"embedding" not in path.read_bytes()
    assert vector_rows(layout) == 0


async def test_a_bad_embedder_is_refused_with_its_name(home):
    @graph_fn(name="bad")
    async def bad(*, context):
        mem = context.memory()
        mem.bind_embedder(lambda text: [0.0, 0.0], kinds=["note"], name="zeros")
        await mem.record("note", text="x")

    async with rt_open(home):
        with pytest.raises(ValueError, match="embedder 'zeros': the embedder returned a zero vector"):
            await bad()


async def test_a_registered_service_can_embed(home):
    from aethergraph.services import register_context_service

    class Embedder:
        name = "svc-toy"

        async def embed(self, text):
            return toy_embed(text)

    register_context_service("embedder", Embedder())

    @graph_fn(name="svc")
    async def svc(*, context):
        mem = context.memory()
        mem.bind_embedder("embedder", kinds=["note"])
        await mem.record("note", text="cats purr")
        await mem.record("note", text="rockets burn")
        (hit,) = await mem.search("rockets", k=1)
        return hit.text, hit.embedding.model

    async with rt_open(home):
        assert await svc() == ("rockets burn", "embedder")


RECORDER = textwrap.dedent(
    """
    import hashlib, re
    from aethergraph import graph_fn, tool

    def toy_embed(text):
        v = [0.0] * 256
        for w in re.findall(r"[a-z]+", text.lower()):
            v[int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little") % 256] += 1.0
        return v

    @tool()
    async def mark(n: int):
        return n  # with strict durability, on disk before it returns

    @graph_fn(name="notes")
    async def notes(*, context):
        mem = context.memory()
        mem.bind_embedder(toy_embed, kinds=["note"], name="toy")
        for i, text in enumerate(["cats purr", "dogs bark", "rockets burn", "fish swim"]):
            await mem.record("note", text=text)
            await mark(i)
        return {"hits": [e.text for e in await mem.search("cats purr", k=1)]}
    """
)


@pytest.mark.slow
def test_resume_does_not_double_vectors(tmp_path, layout):
    crash_run(tmp_path, "notes.py", RECORDER, "notes", "killafter:memory_recorded:rockets")
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    resumed = ag("resume", run["run_id"], "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["outputs"] == {"hits": ["cats purr"]}
    recs = [e for e in read_events(layout.run_log(run["run_id"])) if isinstance(e, ev.MemoryRecorded)]
    assert sorted(e.text for e in recs) == ["cats purr", "dogs bark", "fish swim", "rockets burn"]
    assert all(e.embedding is not None and e.embedding.model == "toy" for e in recs)
    assert vector_rows(layout) == 4


async def test_search_sees_records_added_after_the_last_search(home, scan):
    @graph_fn(name="grow")
    async def grow(*, context):
        mem = context.memory()
        mem.bind_embedder(toy_embed, kinds=["note"], name="toy")
        await mem.record("note", text="cats purr")
        first = [e.text for e in await mem.search("rockets", k=5)]
        for i in range(1500):  # past the reader's first buffer: it grows and keeps the rows
            await mem.record("note", text=f"filler {i}")
        await mem.record("note", text="rockets burn")
        return first, [e.text for e in await mem.search("rockets", k=1)], len(await mem.search("x", k=5000))

    async with rt_open(home):
        first, second, total = await grow()
    assert first == ["cats purr"]
    assert second == ["rockets burn"]
    assert total == 1502
