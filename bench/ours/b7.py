"""B7, ours only: the dashboard's first paint on a large store.

Setup (not timed) writes a store of N runs (100 memory events each) through the public API.
The timed region starts the dashboard headless (Textual's ``run_test``, 100x30) and ends when
its runs table shows rows: the time a person waits after typing ``ag tui``, less the terminal.
"""

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

import trio

from aethergraph import graph_fn, open_runtime
from benchkit.measure import Region, args, emit

VARIANTS = ["first-paint"]


@graph_fn(name="job")
async def job(i, *, context):
    mem = context.memory()
    for k in range(100):
        await mem.record(f"k{k % 10}", {"i": i, "k": k})


async def build(home: str, n: int) -> None:
    async with open_runtime(home=home, console=False, sidecar=False):
        for i in range(n):
            await job(i=i)


async def paint(home: str) -> float:
    from textual.widgets import DataTable

    from aethergraph.tui.app import AetherGraphApp

    app = AetherGraphApp(home)
    async with app.run_test(size=(100, 30)) as pilot:
        while True:
            table = app.screen.query_one("#runs-table", DataTable)
            if table.row_count:
                return table.row_count
            await pilot.pause(0.01)


def main(variant: str, n: int) -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "results") as home:
        trio.run(build, home, n)
        asyncio.run(paint(home))  # the one warm-up (imports, .pyc, the index opened once)
        with Region() as region:
            rows = asyncio.run(paint(home))
    emit("B7", "ours", variant, n, region, first_paint_s=region.wall_s, rows_shown=rows,
         events=n * 100)


if __name__ == "__main__":
    a = args(VARIANTS, 10_000)
    main(a.variant, a.n)
