"""B1, upstream aethergraph 0.1.0a15: per-node overhead of a chain of 2,000 ``step`` nodes.

``top``: ``await step(x=x)``, each call its own run. ``in-run``: one outer graph_fn awaits
``step(x=x, context=context)`` 2,000 times (upstream's child call: same run id). ``record``:
``context.memory().append_event(kind="step", data={"x": x})`` (``record()`` is deprecated
upstream and only forwards to it); upstream's default memory persistence is its SQLite event
log in the workspace (durable file).
"""

import asyncio
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # bench/, for benchkit

import _upstream  # noqa: F401  (before aethergraph: environment and workspace)
from aethergraph import NodeContext, graph_fn

from benchkit.measure import Region, args, emit

VARIANTS = ["top", "top+record", "in-run", "in-run+record"]


@graph_fn(name="step", inputs=["x"], outputs=["y"])
async def step(x: int, context: NodeContext):
    return x + 1


@graph_fn(name="step_record", inputs=["x"], outputs=["y"])
async def step_record(x: int, context: NodeContext):
    await context.memory().append_event(kind="step", data={"x": x})
    return x + 1


@graph_fn(name="chain", inputs=["n", "record"], outputs=["y"])
async def chain(n: int, record: bool, context: NodeContext):
    node = step_record if record else step
    x = 0
    for _ in range(n):
        x = (await node(x=x, context=context))["y"]
    return x


async def chain_top(n: int, record: bool) -> int:
    node = step_record if record else step
    x = 0
    for _ in range(n):
        x = (await node(x=x))["y"]
    return x


async def run(variant: str, n: int) -> int:
    record = variant.endswith("+record")
    if variant.startswith("top"):
        return await chain_top(n, record)
    return (await chain(n=n, record=record))["y"]


async def main(variant: str, n: int) -> None:
    assert await run(variant, 2) == 2  # the one warm-up (also builds upstream's container)
    with Region() as region:
        final = await run(variant, n)
    assert final == n, final
    emit("B1", "upstream", variant, n, region, us_per_node=region.wall_s / n * 1e6,
         cpu_us_per_node=region.cpu_s / n * 1e6,
         backend="SQLite event log (workspace)" if variant.endswith("+record") else "-")


if __name__ == "__main__":
    a = args(VARIANTS, 2000)
    asyncio.run(main(a.variant, a.n))
