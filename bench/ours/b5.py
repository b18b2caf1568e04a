"""B5, ours only: durable ingest (``strict`` and ``batch``) and queries on a 1,000,000-event store.

- ``strict``: N ``memory().record`` calls, each returning only once its event is fsync'd;
  events/s over the loop.
- ``batch``: N records, then one query: events/s until all are on disk AND indexed (the same
  figure as B3's "durable + queryable").
- ``queries-1m``: setup (not timed) builds a store of N events in 100 runs of N/100 (every third
  event tagged, words in the data); the timed region runs 30 of each query and reports medians:
  the 50 most recent of a kind, a tag + kind query, a common and a rare full-text query; then
  ``rebuild_s``, the index rebuilt from the logs alone (``ag index rebuild``).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

import trio

from aethergraph import graph_fn, open_runtime
from benchkit.measure import Region, args, emit

VARIANTS = ["strict", "batch", "queries-1m"]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


async def record_kinds(mem, n: int) -> None:
    """N records of ten kinds (k0..k9, ``{"i": i}``), each awaited: B3's and B5's writes."""
    for i in range(n):
        await mem.record(f"k{i % 10}", {"i": i})


@graph_fn(name="ingest")
async def ingest(n, *, context):
    await record_kinds(context.memory(), n)


@graph_fn(name="ingest_q")
async def ingest_then_query(n, *, context):
    mem = context.memory()
    with Region() as region:
        await record_kinds(mem, n)
        await mem.query(kinds=["k3"], limit=1, scope="run")  # waits for disk + index
    return region


@graph_fn(name="filler")
async def filler(r, n, *, context):
    mem = context.memory()
    for i in range(n):
        await mem.record(f"k{i % 10}", {"i": i, "w": WORDS[(i * 7 + r) % len(WORDS)]},
                         tags=[f"t{i % 5}"] if i % 3 == 0 else None)


def median_ms(fn, times: int = 30) -> float:
    out = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


async def main(variant: str, n: int) -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "results") as home:
        if variant == "strict":
            async with open_runtime(home=home, console=False, sidecar=False, durability="strict"):
                await ingest(n=10)
                with Region() as region:
                    await ingest(n=n)
            emit("B5", "ours", variant, n, region, events_per_s=n / region.wall_s)
            return
        if variant == "batch":
            async with open_runtime(home=home, console=False, sidecar=False):
                await ingest_then_query(n=10)
                region = await ingest_then_query(n=n)
            emit("B5", "ours", variant, n, region, events_per_s=n / region.wall_s)
            return
        async with open_runtime(home=home, console=False, sidecar=False):
            for r in range(100):
                await filler(r=r, n=n // 100)
        from aethergraph.runtime.store.index import Index
        from aethergraph.runtime.store.layout import StoreLayout

        index = Index(StoreLayout.at(home))
        index.memory(kinds=["k3"], limit=50)  # warm-up
        with Region() as region:
            recent = median_ms(lambda: index.memory(kinds=["k3"], limit=50))
            tag_kind = median_ms(lambda: index.memory(kinds=["k2"], tags=["t2"], limit=50))
            text_common = median_ms(lambda: index.memory(text="theta", limit=50))
            text_rare = median_ms(lambda: index.memory(text="kappa lambda", limit=50), 10)
        t = time.perf_counter()
        rebuilt = index.rebuild()
        rebuild_s = time.perf_counter() - t
        count = index.memory_count()
        index.close()
        emit("B5", "ours", variant, n, region, recent_ms=recent, tag_kind_ms=tag_kind,
             text_common_ms=text_common, text_rare_ms=text_rare, rebuild_s=rebuild_s,
             rebuilt_events=rebuilt, correct=count == n)


if __name__ == "__main__":
    a = args(VARIANTS, 100_000)
    trio.run(main, a.variant, a.n)
