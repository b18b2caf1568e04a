"""B12, ours: ``memory().search`` over N embedded records (dimension 384).

Variants:

- ``search``: N records of kind ``doc`` recorded in one node with an embedder bound (a cheap
  deterministic async embedder: seeded pseudo-random unit vectors, so the time is ours, not a
  model's), then 200 searches (k=10) through ``memory().search`` — the embedder's query vector,
  the wait for what was recorded, the scan, the records read back. Reported: p50/p95 per
  query, the ingest rate with embedding on, and which scan ran (numpy or plain Python). The
  first search (which reads every vector into the reader's cache) is reported on its own.
- ``ingest-off``: N records with no embedder bound (the rate B3 measures), to show the vector
  index costs nothing when unused.
"""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

import random
import statistics
import tempfile
import time

import trio

from aethergraph import graph_fn, open_runtime
from benchkit.measure import Region, args, emit

VARIANTS = ["search", "ingest-off"]
DIM = 384
QUERIES = 200


async def embed(text: str) -> list[float]:
    rnd = random.Random(text)
    return [rnd.gauss(0.0, 1.0) for _ in range(DIM)]


@graph_fn(name="b12")
async def b12(n: int, embedded: bool, *, context):
    mem = context.memory()
    if embedded:
        mem.bind_embedder(embed, kinds=["doc"], name="bench-384")
    t0 = time.perf_counter()
    for i in range(n):
        await mem.record("doc", text=f"document {i}")
    ingest_s = time.perf_counter() - t0
    if not embedded:
        await mem.query(kinds=["doc"], limit=1)  # drained and indexed
        return {"ingest_s": ingest_s, "drained_s": time.perf_counter() - t0}
    t1 = time.perf_counter()
    first = await mem.search("query first", k=10)
    first_s = time.perf_counter() - t1
    assert len(first) == 10
    times = []
    for q in range(QUERIES):
        t = time.perf_counter()
        hits = await mem.search(f"query {q}", k=10)
        times.append(time.perf_counter() - t)
        assert len(hits) == 10
    times.sort()
    return {"ingest_s": ingest_s, "first_query_s": first_s, "p50_ms": statistics.median(times) * 1e3,
            "p95_ms": times[int(len(times) * 0.95) - 1] * 1e3}


async def main(variant: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        async with open_runtime(home=home, console=False):
            with Region() as region:
                out = await b12(n=n, embedded=variant == "search")
    extra = {"records_per_s": n / out["ingest_s"]}
    if variant == "search":
        from aethergraph.runtime.store import vectors

        extra.update(p50_query_ms=out["p50_ms"], p95_query_ms=out["p95_ms"],
                     first_query_s=out["first_query_s"], dim=DIM,
                     scan="numpy" if vectors._np is not None else "python")
    else:
        extra.update(drained_records_per_s=n / out["drained_s"])
    emit("B12", "ours", variant, n, region, **extra)


if __name__ == "__main__":
    a = args(VARIANTS, 100_000)
    trio.run(main, a.variant, a.n)
