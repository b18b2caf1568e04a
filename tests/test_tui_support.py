"""Shared pieces of the dashboard tests: graphs to host, a store of fixed facts, and a way to
drive the app from plain (non-trio) tests.

The suite runs under pytest-trio's trio_mode; Textual needs asyncio. Dashboard tests are
therefore plain ``def`` tests that call ``drive()``, which runs the app under ``asyncio.run`` —
and the app runs trio inside itself, in guest mode, exactly as ``ag tui`` does.

This module holds no tests of its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from aethergraph import NodeContext, graph_fn, tool
from aethergraph.runtime import events as ev
from aethergraph.runtime.history import HOST
from aethergraph.runtime.asks import ask_id_for
from aethergraph.runtime.store.artifacts import BlobStore, ref_for
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.layout import StoreLayout

HERE = Path(__file__).resolve()
DEAD_PID = 999_999_999  # beyond any pid_max: "the process that wrote this is gone"

# -- graphs the app hosts (ag tui --run) ------------------------------------------------------------


@graph_fn(name="tui_asker")
async def asker(*, context: NodeContext) -> dict:
    ch = context.channel()
    name = await ch.ask_text("Your name?")
    colour = await ch.ask_choice("Favourite colour?", ["red", "green", "blue"])
    ship = await ch.ask_approval("Ship it?", ("Ship", "Hold"))
    return {"name": name, "colour": colour, "ship": ship["approved"]}


STUCK = {"calls": 0}


@tool(outputs=["doubled"])
async def stuck_step(x: int) -> int:
    """Hangs on its first attempt (until someone retries it), answers on the next."""
    STUCK["calls"] += 1
    if STUCK["calls"] == 1:
        await trio.sleep_forever()
    return x * 2


@tool
async def forever(label: str) -> None:
    await trio.sleep_forever()


@graph_fn(name="tui_worker")
async def worker(*, context: NodeContext) -> dict:
    ch, mem, arts = context.channel(), context.memory(), context.artifacts()
    await ch.send_text("starting the work")
    context.logger().warning("disk is %d%% full", 91)
    async with ch.progress("crunching", total=4) as p:
        for i in range(4):
            await mem.record("step", {"i": i}, tags=["tui"], metrics={"loss": 1.0 / (i + 1), "acc": i / 4})
            await p.update(inc=1, subtitle=f"step {i + 1}")
    await arts.write_text("report.json", content=json.dumps({"ok": True, "steps": 4}))
    doubled = (await stuck_step(x=21))["doubled"]
    await ch.send_text(f"doubled: {doubled}")
    name = await ch.ask_text("Who approves?")
    return {"doubled": doubled, "name": name}


@graph_fn(name="tui_hanger")
async def hanger(*, context: NodeContext) -> dict:
    """Two stuck steps: the first one is cancelled as a node, then the whole run."""
    from aethergraph.runtime.errors import NodeCancelled

    await context.channel().send_text("hanging")
    try:
        await forever(label="first")
    except NodeCancelled:
        await context.channel().send_text("first step was cancelled; carrying on")
    await forever(label="second")
    return {}


@graph_fn(name="tui_noop")
async def noop(*, context: NodeContext) -> dict:
    return {"ok": True}


@graph_fn(name="tui_resumable")
async def resumable(n: int, *, context: NodeContext) -> dict:
    """What an interrupted run in the fixed store was running (its entrypoint points here)."""
    answer = await context.channel().ask_approval("Deploy to prod?", ("Deploy", "Hold"))
    return {"n": n, "deployed": answer["approved"]}


RESUMABLE_ENTRYPOINT = f"{HERE}:resumable"

# -- a store of fixed facts (snapshots must not depend on the clock) -----------------------------

T0 = 1735787045.0  # 2025-01-02 03:04:05 UTC
RUN_OK = "20250102-030405-a1a1a1"
RUN_FAILED = "20250102-040000-b2b2b2"
RUN_INTERRUPTED = "20250102-050000-c3c3c3"
RUN_CANCELLED = "20250102-060000-d4d4d4"
# The id the run derives for its first ask, so a resume finds the answer given while it was dead.
ASK_OFFLINE = ask_id_for(RUN_INTERRUPTED, "tui_resumable", "approval", "Deploy to prod?", ["Deploy", "Hold"])


def write_log(layout: StoreLayout, run_id: str, events: list[ev.Event]) -> None:
    path = layout.run_log(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for seq, e in enumerate(events, 1):
            e.seq = seq
            f.write(ev.encode(e) + b"\n")


def build_store(home: Path) -> StoreLayout:
    """Four runs (succeeded, failed, interrupted with an open ask, cancelled) with nodes,
    progress, logs, messages, memory with metrics and one JSON artifact."""
    layout = StoreLayout.at(home).ensure()
    blobs = BlobStore(layout)
    report = json.dumps({"rows": 3, "status": "ok", "scores": [0.5, 0.75, 0.9]}).encode()
    sha = blobs.put_bytes(report)

    r, t = RUN_OK, T0
    g = "pipeline"
    ok = [
        ev.RunStarted(run_id=r, ts=t, graph=g, inputs={"spec": {"name": "toy"}}, entrypoint="demo.py:pipeline",
                      pid=4242, host="gpu-box"),
        ev.NodeStarted(run_id=r, ts=t + 0.01, node=g, name=g, kind="graph_fn"),
        ev.MessageSent(run_id=r, ts=t + 0.02, node=g, text="Submitting your job…"),
        ev.NodeStarted(run_id=r, ts=t + 0.03, node=f"{g}/fetch", name="fetch", kind="tool", parent=g),
        ev.AttemptRetried(run_id=r, ts=t + 0.5, node=f"{g}/fetch", attempt=1, delay_s=0.25,
                          error=ev.ErrorInfo(type="TimeoutError", message="slow mirror")),
        ev.NodeFinished(run_id=r, ts=t + 1.0, node=f"{g}/fetch", outputs={"rows": 3}, attempt=2, duration_s=0.97),
        ev.Progress(run_id=r, ts=t + 1.1, node=g, progress_id="p-1", title="training", state="start", total=5),
    ]
    for i in range(5):
        ok.append(ev.MemoryRecorded(run_id=r, ts=t + 1.2 + i * 0.1, node=g, event_id=f"m-{i}", kind="epoch",
                                    graph=g, data={"epoch": i}, tags=("train",), entities=("toy",),
                                    metrics={"loss": round(1.0 / (i + 1), 3), "acc": round(0.5 + i * 0.1, 2)}))
        ok.append(ev.Progress(run_id=r, ts=t + 1.25 + i * 0.1, node=g, progress_id="p-1", title="training",
                              state="update", current=i + 1, total=5, subtitle=f"epoch {i + 1}"))
    ok += [
        ev.Log(run_id=r, ts=t + 1.8, node=g, level="info", message="training done"),
        ev.Log(run_id=r, ts=t + 1.81, node=g, level="warning", message="disk 91% full"),
        ev.ArtifactWritten(run_id=r, ts=t + 1.9, node=g, ref=ref_for(sha), sha256=sha, name="report.json",
                           size=len(report), mime="application/json", kind="json", event_id="a-1"),
        ev.MessageSent(run_id=r, ts=t + 1.95, node=g, text="✅ Job finished. Saved result."),
        ev.NodeFinished(run_id=r, ts=t + 2.0, node=g, outputs={"rows": 3}, duration_s=1.99),
        ev.RunFinished(run_id=r, ts=t + 2.0, status="succeeded", outputs={"rows": 3}, duration_s=2.0),
    ]
    write_log(layout, r, ok)

    r, t = RUN_FAILED, T0 + 3235
    write_log(layout, r, [
        ev.RunStarted(run_id=r, ts=t, graph=g, pid=4243, host="gpu-box"),
        ev.NodeStarted(run_id=r, ts=t + 0.1, node=g, name=g, kind="graph_fn"),
        ev.MemoryRecorded(run_id=r, ts=t + 0.2, node=g, event_id="m-f", kind="job_failed", graph=g,
                          data={"job_id": "job_17"}, tags=("demo",), text="mirror refused the upload"),
        ev.NodeFailed(run_id=r, ts=t + 0.3, node=g, error=ev.ErrorInfo(type="ValueError", message="bad row 7")),
        ev.RunFinished(run_id=r, ts=t + 0.3, status="failed",
                       error=ev.ErrorInfo(type="ValueError", message="bad row 7"), duration_s=0.3),
    ])

    r, t = RUN_INTERRUPTED, T0 + 6835
    write_log(layout, r, [
        ev.RunStarted(run_id=r, ts=t, graph="tui_resumable", inputs={"n": 7}, entrypoint=RESUMABLE_ENTRYPOINT,
                      pid=DEAD_PID, host=HOST),
        ev.NodeStarted(run_id=r, ts=t + 0.1, node="tui_resumable", name="tui_resumable", kind="graph_fn",
                       inputs={"n": 7}),
        ev.AskOpened(run_id=r, ts=t + 0.2, node="tui_resumable", ask_id=ASK_OFFLINE, ask_kind="approval",
                     prompt="Deploy to prod?", options=["Deploy", "Hold"], timeout_s=None),
    ])

    r, t = RUN_CANCELLED, T0 + 10435
    write_log(layout, r, [
        ev.RunStarted(run_id=r, ts=t, graph="nightly", pid=4244, host="gpu-box"),
        ev.NodeStarted(run_id=r, ts=t + 0.1, node="nightly", name="nightly", kind="graph_fn"),
        ev.NodeCancelled(run_id=r, ts=t + 5, node="nightly", reason="cancelled by ag cancel", by="ag cancel"),
        ev.RunFinished(run_id=r, ts=t + 5, status="cancelled", duration_s=5),
    ])
    index = Index(layout)
    try:
        index.catch_up()
    finally:
        index.close()
    return layout


# -- driving the app ------------------------------------------------------------------------------


def drive(app: Any, scenario: Callable[[Any], Awaitable[None]], *, size=(100, 30), timeout: float = 60.0) -> None:
    """Run ``scenario(pilot)`` against ``app`` under asyncio (the app runs trio inside)."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await asyncio.wait_for(scenario(pilot), timeout)

    asyncio.run(main())


async def until(pilot: Any, predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` after ``timeout``."""
    # Imported here: `ag resume` loads this file by path (RESUMABLE_ENTRYPOINT), where a
    # relative import at the top would fail.
    from .agproc import polls

    for _ in polls(what, timeout):
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)


class Notes:
    """Records what the app tells the person (``app.notify``), for assertions."""

    def __init__(self, app: Any) -> None:
        self.items: list[tuple[str, str]] = []
        original = app.notify

        def notify(message, *args, severity="information", **kwargs):
            self.items.append((str(message), severity))
            return original(message, *args, severity=severity, **kwargs)

        app.notify = notify

    def text(self) -> str:
        return "\n".join(m for m, _ in self.items)

    def has(self, fragment: str, severity: str | None = None) -> bool:
        return any(fragment in m and (severity is None or s == severity) for m, s in self.items)


# -- a store whose run content is hostile (issue 14, defect 2) -----------------------------------

RUN_HOSTILE = "20250103-010000-e5e5e5"


def build_hostile_store(home: Path) -> tuple[StoreLayout, str]:
    """One interrupted run whose every run-derived string carries the whole hostile corpus:
    graph and node names, a message, a log line, a progress title, an error, memory (kind,
    data, tags, metric name), an artifact (name and content) and an open ask (prompt, options).
    Returns the layout and the hostile string."""
    from aethergraph.runtime.textsafe import HOSTILE

    h = "".join(HOSTILE)
    layout = StoreLayout.at(home).ensure()
    blobs = BlobStore(layout)
    content = f"first line {h}\nsecond line".encode()
    sha = blobs.put_bytes(content)
    r, t, g = RUN_HOSTILE, T0 + 86400, f"graph{h}"
    child = f"{g}/node{h}"
    write_log(layout, r, [
        ev.RunStarted(run_id=r, ts=t, graph=g, inputs={"x": h}, entrypoint="x.py:f", pid=DEAD_PID, host=HOST),
        ev.NodeStarted(run_id=r, ts=t + 0.1, node=g, name=g, kind="graph_fn"),
        ev.MessageSent(run_id=r, ts=t + 0.2, node=g, text=f"message {h}"),
        ev.Log(run_id=r, ts=t + 0.3, node=g, level="warning", message=f"log {h}"),
        ev.Progress(run_id=r, ts=t + 0.4, node=g, progress_id="p", title=f"title{h}", state="update",
                    current=3, total=9, subtitle=h),
        ev.NodeStarted(run_id=r, ts=t + 0.5, node=child, name=f"node{h}", kind="tool", parent=g, inputs={"h": h}),
        ev.NodeFailed(run_id=r, ts=t + 0.6, node=child, error=ev.ErrorInfo(type="ValueError", message=f"err {h}")),
        ev.MemoryRecorded(run_id=r, ts=t + 0.7, node=g, event_id="m-h", kind=f"kind{h}", graph=g,
                          data={"d": h}, tags=(f"tag{h}",), metrics={f"metric{h}": 1.0}),
        ev.ArtifactWritten(run_id=r, ts=t + 0.8, node=g, ref=ref_for(sha), sha256=sha, name=f"name{h}.txt",
                           size=len(content), mime="text/plain", kind="text", event_id="a-h"),
        ev.AskOpened(run_id=r, ts=t + 0.9, node=g, ask_id="ask-hostile", ask_kind="choice",
                     prompt=f"prompt {h}", options=[f"opt{h}", "Hold"], timeout_s=None),
    ])
    index = Index(layout)
    try:
        index.catch_up()
    finally:
        index.close()
    return layout, h
