"""``memory().record`` CPU on the run's own thread, per call (not a peer workload: a guard for
the cost of step identity, issue 20).

    python bench/micro/record_cpu.py [--n 50000] [--reps 7] [--data small|nested]

One node records N events in a loop (``kind=f"k{i % 10}"``); the figure is the trio thread's
``time.thread_time()`` over the loop divided by N — the log writer's disk thread (write, fsync,
index) is not counted, so the noise of a shared disk stays out. Prints the median and the
spread of ``--reps`` loops, each in a fresh runtime and store.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import trio

from aethergraph import graph_fn, open_runtime

DATA = {
    "small": lambda i: {"i": i},
    "nested": lambda i: {"step": i, "name": "tokenize", "scores": [0.1, 0.2, 0.3],
                         "meta": {"b": 1, "a": "x" * 40}},
}


@graph_fn(name="records")
async def records(n, shape, *, context):
    mem = context.memory()
    make = DATA[shape]
    t0 = time.thread_time()
    for i in range(n):
        await mem.record(f"k{i % 10}", make(i))
    return time.thread_time() - t0


async def once(n: int, shape: str) -> float:
    with tempfile.TemporaryDirectory() as home:
        async with open_runtime(home=home, console=False):
            await records(n=10, shape=shape)  # warm-up
            return await records(n=n, shape=shape)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--data", choices=sorted(DATA), default="small")
    a = p.parse_args()
    per = [trio.run(once, a.n, a.data) / a.n * 1e6 for _ in range(a.reps)]
    print(f"record CPU (trio thread) µs/call: median {statistics.median(per):.3f} "
          f"(min {min(per):.3f}, max {max(per):.3f}; {a.reps} reps of {a.n}, data {a.data})")


if __name__ == "__main__":
    main()
