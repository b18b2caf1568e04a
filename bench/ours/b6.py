"""B6, ours only: the sidecar, measured from another process over the unix socket.

- ``ask-rtt``: a runtime in a child process asks N questions in a row; this process answers
  each as soon as it sees it open. Reported: the median (and p90) time from sending the answer
  to seeing the ``ask_answered`` event, i.e. the node has resumed.
- ``subscriber``: a child process records N events as fast as it can while this process
  subscribes to its run; reported: the child's emit rate and the rate this subscriber received
  them at. ``nosub``: the same child with nobody watching (the rate a watched run is compared to).
- ``paced-sub`` / ``paced-nosub``: the same, but the child records at a set pace of 50,000
  events/s (bursts of 500 every 10 ms), the rate issue 4 names: does a watched run keep its
  pace, and does the subscriber keep up with it?
"""

import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

import trio

from benchkit.measure import Region, args, emit
from aethergraph.runtime import events as ev
from aethergraph.runtime.sidecar.client import SidecarClient, find_runtimes

VARIANTS = ["ask-rtt", "subscriber", "nosub", "paced-sub", "paced-nosub"]
PACE = 50_000

ASKER = textwrap.dedent("""
    import sys, trio
    from aethergraph import graph_fn, open_runtime
    @graph_fn(name="asker")
    async def asker(n, *, context):
        ch = context.channel()
        for i in range(n):
            await ch.ask_text(f"q{i}")
    async def main():
        async with open_runtime(home=sys.argv[1], console=False):
            await asker(n=int(sys.argv[2]))
    trio.run(main)
""")

EMITTER = textwrap.dedent("""
    import os, sys, time, trio
    from aethergraph import graph_fn, open_runtime
    @graph_fn(name="emitter")
    async def emitter(n, *, context):
        mem = context.memory()
        while not os.path.exists(sys.argv[3]):
            await trio.sleep(0.005)
        pace = float(sys.argv[4])  # events/s; 0: as fast as it can
        t0 = time.perf_counter()
        start = trio.current_time()
        for i in range(n):
            await mem.record("tick", {"i": i})
            if pace and i % 500 == 499:
                await trio.sleep_until(start + (i + 1) / pace)
        print(n / (time.perf_counter() - t0), flush=True)
    async def main():
        async with open_runtime(home=sys.argv[1], console=False):
            await emitter(n=int(sys.argv[2]))
            # stay up until the subscriber has everything (it removes the flag), 60 s at most
            with trio.move_on_after(60):
                while os.path.exists(sys.argv[3]):
                    await trio.sleep(0.01)
    trio.run(main)
""")


async def connect(home: str):
    while not find_runtimes(home):
        await trio.sleep(0.005)
    return find_runtimes(home)[0]


async def ask_rtt(home: str, n: int):
    child = subprocess.Popen([sys.executable, "-c", ASKER, home, str(n)])
    advert = await connect(home)
    times: list[float] = []
    async with SidecarClient.connect(advert, client="bench") as c:
        run_id = ""
        while not run_id:
            runs = await c.list_runs()
            run_id = runs[0].run_id if runs else ""
        sent = 0.0
        with Region() as region:
            async with c.subscribe(run_id) as events:
                async for e in events:
                    if type(e) is ev.AskOpened:
                        sent = time.perf_counter()
                        await c.answer(e.ask_id, "x")
                    elif type(e) is ev.AskAnswered:
                        times.append((time.perf_counter() - sent) * 1000)
                    elif type(e) is ev.RunFinished:
                        break
    child.wait(timeout=60)
    return region, times


async def watch(home: str, n: int, subscribe: bool, pace: float):
    flag = Path(home) / "go"
    child = subprocess.Popen([sys.executable, "-c", EMITTER, home, str(n), str(flag), str(pace)],
                             stdout=subprocess.PIPE, text=True)
    advert = await connect(home)
    received = 0
    with Region() as region:
        if subscribe:
            async with SidecarClient.connect(advert, client="bench") as c:
                run_id = ""
                while not run_id:
                    runs = await c.list_runs()
                    run_id = runs[0].run_id if runs else ""
                async with c.subscribe(run_id) as events:
                    flag.touch()
                    t0 = time.perf_counter()
                    async for e in events:
                        if type(e) is ev.MemoryRecorded:
                            received += 1
                        elif type(e) is ev.RunFinished:
                            break
                    recv_rate = received / (time.perf_counter() - t0)
                    flag.unlink()
        else:
            flag.touch()
            recv_rate = 0.0
        emit_rate = float(child.stdout.readline())
    if flag.exists():
        flag.unlink()
    child.wait(timeout=60)
    return region, emit_rate, recv_rate, received


async def main(variant: str, n: int) -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "results") as home:
        if variant == "ask-rtt":
            region, times = await ask_rtt(home, n)
            times.sort()
            emit("B6", "ours", variant, n, region, rtt_ms=statistics.median(times),
                 rtt_p90_ms=times[int(len(times) * 0.9)], answered=len(times))
        else:
            pace = PACE if variant.startswith("paced") else 0
            region, emit_rate, recv_rate, received = await watch(
                home, n, variant in ("subscriber", "paced-sub"), pace)
            emit("B6", "ours", variant, n, region, emit_events_per_s=emit_rate,
                 recv_events_per_s=recv_rate, received=received)


if __name__ == "__main__":
    a = args(VARIANTS, 200)
    trio.run(main, a.variant, a.n)
