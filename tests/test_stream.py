"""channel().stream(): pieces shown as they come, coalesced in the log, one message at the end,
and a resumed stream neither says its text twice nor loses any of it."""

from __future__ import annotations

import io
import json
import signal
import textwrap

import pytest
import trio

from aethergraph import graph_fn
from aethergraph.channel import Stream
from aethergraph.console import ConsolePrinter
from aethergraph.runtime import events as ev
from aethergraph.runtime.store.logfile import read_events

from .conftest import ag, rt_open, run_events


def stream_text(events) -> dict[str, str]:
    """Each stream's text as a reader rebuilds it from the deltas alone."""
    texts: dict[str, str] = {}
    for e in events:
        if isinstance(e, ev.StreamDelta):
            texts[e.stream_id] = texts.get(e.stream_id, "")[: e.offset] + e.text
    return texts


async def test_ten_thousand_small_pieces_are_one_text_in_few_events(home, layout, monkeypatch):
    # Coalescing by size only here (the 50 ms rule would make the count depend on the machine).
    monkeypatch.setattr(Stream, "FLUSH_S", 3600.0)
    pieces = [f"t{i} " for i in range(10_000)]

    @graph_fn(name="talk")
    async def talk(*, context):
        async with context.channel().stream() as s:
            for p in pieces:
                await s.delta(p)
        return s.stream_id

    async with rt_open(home):
        sid = await talk()
    (path,) = list(layout.iter_logs())
    events = run_events(layout, path.stem)
    whole = "".join(pieces)
    deltas = [e for e in events if isinstance(e, ev.StreamDelta)]
    # the first piece at once, then one event per FLUSH_CHARS characters
    assert len(deltas) <= len(whole) // Stream.FLUSH_CHARS + 2
    assert stream_text(events) == {sid: whole}
    (msg,) = [e for e in events if isinstance(e, ev.MessageSent)]
    assert (msg.kind, msg.text, msg.data) == ("stream", whole, {"stream": sid})


async def test_a_slow_producer_piece_is_flushed_without_waiting_for_the_next(home, monkeypatch):
    monkeypatch.setattr(Stream, "FLUSH_S", 0.01)
    seen: list[str] = []
    got_b = trio.Event()
    release = trio.Event()

    def on_delta(e, encoded=b""):
        seen.append(e.text)
        if "b" in e.text:
            got_b.set()

    @graph_fn(name="slow")
    async def slow(*, context):
        async with context.channel().stream() as s:
            await s.delta("a")  # the first piece goes out at once
            await s.delta("b")  # within FLUSH_S of it: buffered, then sent by the flusher
            await release.wait()  # the producer is silent now
            await s.delta("c")

    async with rt_open(home) as rt:
        rt.subscribe(on_delta, types=[ev.StreamDelta])
        async with trio.open_nursery() as n:
            n.start_soon(slow)
            with trio.fail_after(10):
                await got_b.wait()
            assert "".join(seen) == "ab"  # "b" shown while the producer still waits
            release.set()
    assert "".join(seen) == "abc"


async def test_console_prints_pieces_on_one_line_and_the_end_once(home):
    out = io.StringIO()
    printer = ConsolePrinter(out)

    @graph_fn(name="talk")
    async def talk(*, context):
        ch = context.channel()
        async with ch.stream() as s:
            await s.delta("hello ")
            await s.delta("world")
        await ch.send_text("after")

    async with rt_open(home) as rt:
        rt.subscribe(printer, types=list(ConsolePrinter.TYPES))
        await talk()
    assert out.getvalue() == "hello world\nafter\n"


async def test_a_stream_stopped_by_an_error_keeps_what_it_said(home, layout):
    @graph_fn(name="boom")
    async def boom(*, context):
        async with context.channel().stream() as s:
            await s.delta("partial")
            raise ValueError("model went away")

    async with rt_open(home):
        with pytest.raises(ValueError, match="model went away"):  # not wrapped in a group
            await boom()
    (path,) = list(layout.iter_logs())
    (msg,) = [e for e in run_events(layout, path.stem) if isinstance(e, ev.MessageSent)]
    assert msg.text == "partial" and msg.data["stopped"] == "ValueError"


STREAMER = textwrap.dedent(
    """
    from aethergraph import graph_fn, tool
    from aethergraph.channel import Stream

    Stream.FLUSH_CHARS = 8  # a delta every few pieces, so a crash can fall between them
    Stream.FLUSH_S = 3600.0

    @tool()
    async def mark(n: int):
        return n  # a tool result: with strict durability the log is on disk before it returns

    @graph_fn(name="talk")
    async def talk(*, context):
        ch = context.channel()
        async with ch.stream("answer") as s:
            for i in range(12):
                await s.delta(f"part{i}|")
                if i == 6:
                    await mark(i)
        await ch.send_text("done talking")
        await mark(99)
        return {"said": s.text}
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["killafter:stream_delta:part5", "killafter:message_sent:done talking"])
def test_resumed_stream_neither_doubles_nor_loses_text(tmp_path, layout, fault):
    script = tmp_path / "talk.py"
    script.write_text(STREAMER)
    crashed = ag("run", f"{script}:talk", "--durability", "strict",
                 env={"AETHERGRAPH_FAULT": fault}, cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run,) = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    before = [e for e in read_events(layout.run_log(run["run_id"])) if isinstance(e, ev.StreamDelta)]
    assert before, "the crash came after some of the stream was on disk"
    resumed = ag("resume", run["run_id"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    events = read_events(layout.run_log(run["run_id"]))
    whole = "".join(f"part{i}|" for i in range(12))
    deltas = [e for e in events if isinstance(e, ev.StreamDelta)]
    assert list(stream_text(events).values()) == [whole]
    # Nothing said twice: the resume added only what the log did not hold.
    assert sum(len(d.text) for d in deltas) == len(whole)
    assert deltas[: len(before)] == before
    msgs = [e for e in events if isinstance(e, ev.MessageSent)]
    assert [(m.kind, m.text) for m in msgs] == [("stream", whole), ("text", "done talking")]


# -- the dashboard's pieces (new widget; hooked into the messages panel by the dashboard's owners)


def test_dashboard_stream_panel_shows_the_text_growing_and_images_by_size_and_type():
    import asyncio

    from textual.app import App

    from aethergraph.tui.widgets.stream import StreamPanel, StreamTexts, message_text

    streams = StreamTexts()

    class Host(App):
        def compose(self):
            yield StreamPanel(id="streams")

    def delta(offset, text):
        return ev.StreamDelta(run_id="r", node="g/talk", stream_id="s-1", offset=offset, text=text)

    async def main():
        app = Host()
        async with app.run_test(size=(80, 12)) as pilot:
            panel = app.query_one(StreamPanel)
            seen = []
            for e in (delta(0, "Hello"), delta(5, ", wor"), delta(10, "ld")):
                streams.apply(e)
                panel.show(streams)
                await pilot.pause()
                seen.append(str(panel.render()))
            assert "Hello" in seen[0] and "Hello, wor" in seen[1] and "Hello, world" in seen[2]
            streams.apply(delta(7, "there"))  # a resumed stream corrects itself from offset 7
            panel.show(streams)
            await pilot.pause()
            assert "Hello, there" in str(panel.render())
            streams.apply(ev.MessageSent(run_id="r", node="g/talk", text="Hello, there", kind="stream",
                                         data={"stream": "s-1"}))
            panel.show(streams)
            await pilot.pause()
            assert not panel.display  # ended: an ordinary message from now on

    asyncio.run(main())
    image = ev.MessageSent(run_id="r", text="the plot", kind="image", data={
        "ref": "ag://artifact/" + "a" * 64, "name": "plot.png", "size": 2048, "mime": "image/png",
        "width": 640, "height": 480, "caption": "the plot"})
    shown = message_text(image).plain
    assert "the plot · plot.png (640×480, 2.0 KB, image/png)" in shown
    assert "ag artifacts export ag://artifact/" + "a" * 64 in shown
