"""B1, ours: per-node overhead of a chain of 2,000 ``step(x) -> x + 1`` nodes.

Shapes: ``top`` (every call its own top-level run, all in one open runtime) and ``in-run`` (one
outer graph_fn awaits the child 2,000 times with its own context). ``in-run-tool``: the same with
``step`` as a ``@tool``; ``graphify``: the same chain as a static ``@graphify`` graph of 2,000
``@tool`` nodes (built inside the measured region: building is part of its cost). ``record`` appends one memory
event per node (``durability="batch"``, the default: accepted by the log writer when ``record``
returns, fsync'd in groups within ~5 ms). Store: a fresh temporary directory.
"""

import sys
import tempfile
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

import trio

from aethergraph import graph_fn, graphify, open_runtime, tool
from benchkit.measure import Region, args, emit

VARIANTS = ["top", "top+record", "in-run", "in-run+record", "in-run-tool", "graphify"]


@graph_fn(name="step")
async def step(x):
    return x + 1


@graph_fn(name="step")
async def step_record(x, *, context):
    await context.memory().record("step", {"x": x})
    return x + 1


@graph_fn(name="chain")
async def chain(n, record, *, context):
    node = step_record if record else step
    x = 0
    for _ in range(n):
        x = await node(x=x, context=context)
    return x


@tool(name="step", outputs=["x"])
async def step_tool(x):
    return x + 1


@graph_fn(name="chain")
async def chain_tool(n, *, context):
    x = 0
    for _ in range(n):
        x = (await step_tool(x=x, context=context))["x"]
    return x


def static_chain(n):
    @graphify(name="chain", outputs=["x"])
    def chain(x0):
        x = x0
        for _ in range(n):
            x = step_tool(x=x)  # a one-output handle stands for that output
        return x

    return chain


async def run_static(n):
    return (await static_chain(n)(x0=0))["x"]


async def chain_top(n, record):
    node = step_record if record else step
    x = 0
    for _ in range(n):
        x = await node(x=x)
    return x


async def main(variant: str, n: int) -> None:
    record = variant.endswith("+record")
    if variant == "in-run-tool":
        run = lambda k: chain_tool(n=k)  # noqa: E731
    elif variant == "graphify":
        run = run_static
    elif variant.startswith("top"):
        run = lambda k: chain_top(k, record)  # noqa: E731
    else:
        run = lambda k: chain(n=k, record=record)  # noqa: E731
    with tempfile.TemporaryDirectory() as home:
        async with open_runtime(home=home, console=False):
            assert await run(2) == 2  # the one warm-up
            with Region() as region:
                final = await run(n)
            assert final == n, final
    emit("B1", "ours", variant, n, region, us_per_node=region.wall_s / n * 1e6,
         cpu_us_per_node=region.cpu_s / n * 1e6, backend="log file (batch)" if record else "-")


if __name__ == "__main__":
    a = args(VARIANTS, 2000)
    trio.run(main, a.variant, a.n)
