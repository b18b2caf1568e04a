"""B8, ours only: does the dashboard answer keys while a run streams events at it?

Setup (not timed): another process starts a run that emits about N events a second for as long
as the measurement lasts (memory records, with a progress update and a log line every 100th,
after three short tool steps so the node tree has rows to move through), on a store in a
temporary folder, with its sidecar on the unix socket as ``ag run`` would. The dashboard starts
headless in this process (Textual ``run_test``, 100x30), attaches to that runtime and opens the
run's detail panel: the live node tree, timeline, log and progress views.

The timed region presses keys one at a time, 200 ms apart (a quick person's pace), through the
driver as a terminal delivers them, 10 rounds of: ``j`` and ``k`` (move in the node tree),
``l`` and ``t`` (log tab, timeline tab), ``?`` and ``esc`` (help opens, closes). Each key is
timed until its effect is visible in the app's state (cursor moved, tab shown, screen
changed). What the dashboard took in from the run over the region is reported beside it (events
of every kind: about 1.02 per record), so a slow emitter cannot pass for a fast dashboard.
"""

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench/, for benchkit

from benchkit.measure import Region, args, emit

VARIANTS = ["keys-under-load"]
ROUNDS = 10
PACE_S = 0.2
EMITTER = """
import sys, trio
from aethergraph import graph_fn, open_runtime, tool

RATE = int(sys.argv[2])

@tool
async def step(n):
    return n

@graph_fn(name="streamer")
async def streamer(*, context):
    mem, ch, log = context.memory(), context.channel(), context.logger()
    for n in range(3):
        await step(n)
    async with ch.progress(title="ticks") as bar:
        start = trio.current_time()
        i = 0
        while True:  # until the benchmark stops this process
            for _ in range(RATE // 100):  # bursts every 10 ms
                await mem.record("tick", {"i": i, "note": "a line of words to index"})
                i += 1
                if i % 100 == 0:
                    await bar.update(i)
                    log.info("emitted %d events", i)
            await trio.sleep_until(start + i / RATE)

async def main():
    async with open_runtime(home=sys.argv[1], console=False):
        await streamer()

trio.run(main)
"""


async def measure(home: str, rate: int) -> dict:
    from textual import events
    from textual.widgets import TabbedContent

    from aethergraph.tui.app import AetherGraphApp
    from aethergraph.tui.screens.help import HelpScreen
    from aethergraph.tui.screens.run_detail import RunDetailScreen
    from aethergraph.tui.widgets.node_tree import NodeTree

    app = AetherGraphApp(home, poll_s=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = time.monotonic() + 60
        while not app.state.live_runs:
            if time.monotonic() > deadline:
                raise SystemExit("the dashboard never saw the emitting run")
            await pilot.pause(0.05)
        (run_id,) = app.state.live_runs
        app.open_run(run_id)
        while not (isinstance(app.screen, RunDetailScreen) and app.detail.loaded):
            await pilot.pause(0.05)
        await pilot.pause(1.0)  # let the live stream settle in
        tree = app.screen.query_one(NodeTree)
        tabs = app.screen.query_one(TabbedContent)
        while tree.last_line < 3:  # the three steps drawn
            await pilot.pause(0.05)
        tree.focus()
        tree.cursor_line = 0

        async def key(name: str, character: str | None, done) -> float:
            sent = time.perf_counter()
            app._driver.send_message(events.Key(name, character))
            while not done():
                await asyncio.sleep(0.0005)
            took = (time.perf_counter() - sent) * 1000
            await asyncio.sleep(PACE_S)
            return took

        latencies, screen_keys = [], []
        seen0, t0 = app.detail.summary.events, time.perf_counter()
        with Region() as region:
            for _ in range(ROUNDS):
                latencies.append(await key("j", "j", lambda: tree.cursor_line == 1))
                latencies.append(await key("k", "k", lambda: tree.cursor_line == 0))
                latencies.append(await key("l", "l", lambda: tabs.active == "log"))
                latencies.append(await key("t", "t", lambda: tabs.active == "timeline"))
                for name, char, screen in (("question_mark", "?", HelpScreen),
                                           ("escape", None, RunDetailScreen)):
                    took = await key(name, char, lambda s=screen: isinstance(app.screen, s))
                    latencies.append(took)
                    screen_keys.append(took)
        received = (app.detail.summary.events - seen0) / (time.perf_counter() - t0)
    latencies.sort()
    return {
        "region": region,
        "key_ms": statistics.median(latencies),
        "key_p95_ms": latencies[int(len(latencies) * 0.95) - 1],
        "key_max_ms": latencies[-1],
        "screen_key_ms": statistics.median(screen_keys),
        "received_events_per_s": received,
        "keys": len(latencies),
    }


def main(variant: str, rate: int) -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / "results") as home:
        emitter = subprocess.Popen([sys.executable, "-c", EMITTER, home, str(rate)], cwd=home,
                                   start_new_session=True)
        try:
            asyncio.run(measure(home, rate))  # the one warm-up: imports, attach, first draw
            result = asyncio.run(measure(home, rate))
        finally:
            os.killpg(emitter.pid, signal.SIGINT)  # Ctrl-C: the run ends CANCELLED, cleanly
            try:
                emitter.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(emitter.pid, signal.SIGKILL)
                emitter.wait()
    region = result.pop("region")
    emit("B8", "ours", variant, rate, region, **result)


if __name__ == "__main__":
    a = args(VARIANTS, 1_000)
    main(a.variant, a.n)
