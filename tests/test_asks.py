"""Asks: scripted answers, stdin (pipe), validation, deadlines, never hanging."""

from __future__ import annotations

import io

import pytest
import trio

from aethergraph import AskTimeout, InvalidAnswer, NoAnswerAvailable, graph_fn
from aethergraph.console import ConsolePrinter, ConsoleSource, StdinLines
from aethergraph.runtime import events as ev
from aethergraph.runtime.asks import normalize_answer

from .conftest import rt_open, run_events



@pytest.mark.parametrize(
    ("value", "expected"),
    [("approve", "Approve"), ("APPROVE", "Approve"), ("1", "Approve"), ("2", "Reject"), ("r", "Reject"), (" Reject ", "Reject")],
)
def test_normalize_choice(value, expected):
    assert normalize_answer("approval", ["Approve", "Reject"], value) == expected


@pytest.mark.parametrize("value", ["", "3", "maybe", "0"])
def test_normalize_rejects_answers_not_offered(value):
    with pytest.raises(InvalidAnswer):
        normalize_answer("choice", ["Approve", "Reject"], value)


def test_normalize_rejects_empty_text_and_ambiguous_prefix():
    with pytest.raises(InvalidAnswer, match="empty"):
        normalize_answer("text", [], "   ")
    with pytest.raises(InvalidAnswer, match="not one of"):
        normalize_answer("choice", ["stop", "start"], "st")


async def test_approval_and_choice_with_scripted_answers(home, layout):
    @graph_fn(name="g")
    async def g(*, context):
        ch = context.channel()
        a = await ch.ask_approval("Deploy?", options=("Deploy", "Hold"))
        b = await ch.ask_approval("Really?")
        c = await ch.ask_choice("Colour?", ["red", "green"])
        return [a, b, c]

    async with rt_open(home, answers=["deploy", "2", "gr"]):
        out = await g()
    assert out == [
        {"approved": True, "choice": "Deploy"},
        {"approved": False, "choice": "Reject"},
        "green",
    ]


async def test_scripted_answer_that_does_not_fit_is_refused_and_the_ask_stays_open(home, layout, capsys):
    out = io.StringIO()
    source = ConsoleSource(StdinLines(io.StringIO("b\n")), stream=out)

    @graph_fn(name="g")
    async def g(*, context):
        return await context.channel().ask_choice("Pick", ["a", "b"])

    async with rt_open(home, answers=["c"]) as rt:
        rt.asks.add_source(source)
        assert await g() == "b"  # the console answered the ask the script could not
    err = capsys.readouterr().err
    assert "✗ scripted answer 'c' refused for ask" in err
    assert "'c' is not one of the options: a, b" in err
    (path,) = list(layout.iter_logs())
    events = run_events(layout, path.stem)
    assert [(e.answer, e.by) for e in events if isinstance(e, ev.AskAnswered)] == [("b", "console")]
    assert events[-1].status == "succeeded"


async def test_refused_scripted_answer_is_named_when_nobody_else_can_answer(home):
    @graph_fn(name="g")
    async def g(*, context):
        return await context.channel().ask_choice("Pick", ["a", "b"])

    with pytest.raises(NoAnswerAvailable, match="scripted answer 'c' refused: 'c' is not one of the options: a, b"):
        async with rt_open(home, answers=["c"]):
            await g()


async def test_piped_stdin_answers_and_skips_invalid_lines(home, layout):
    out = io.StringIO()
    source = ConsoleSource(StdinLines(io.StringIO("maybe\nno\n")), stream=out)

    @graph_fn(name="g")
    async def g(*, context):
        return await context.channel().ask_approval("Go?", options=("yes", "no"))

    async with rt_open(home) as rt:
        rt.asks.add_source(source)
        result = await g()
    assert result == {"approved": False, "choice": "no"}
    assert "✗ 'maybe' is not one of the options: yes, no" in out.getvalue()
    (path,) = list(layout.iter_logs())
    (answered,) = [e for e in run_events(layout, path.stem) if isinstance(e, ev.AskAnswered)]
    assert (answered.answer, answered.by) == ("no", "console")


async def test_stdin_at_end_of_input_fails_instead_of_hanging(home, layout):
    source = ConsoleSource(StdinLines(io.StringIO("")), stream=io.StringIO())

    @graph_fn(name="g")
    async def g(*, context):
        return await context.channel().ask_text("Name?")

    with pytest.raises(NoAnswerAvailable, match="stdin reached end of input"):
        async with rt_open(home) as rt:
            rt.asks.add_source(source)
            await g()
    (path,) = list(layout.iter_logs())
    expired = [e for e in run_events(layout, path.stem) if isinstance(e, ev.AskExpired)]
    assert [e.reason for e in expired] == ["unanswerable"]


async def test_no_channel_at_all_fails_at_once(home):
    @graph_fn(name="g")
    async def g(*, context):
        return await context.channel().ask_text("Name?")

    with pytest.raises(NoAnswerAvailable, match="no channel that can answer"):
        async with rt_open(home):
            await g()


class NeverAnswers:
    name = "silent"

    def available(self):
        return True

    async def serve(self, ask, broker):
        await trio.sleep_forever()


async def test_ask_deadline_raises_ask_timeout_or_returns_default(home, layout, autojump_clock):
    @graph_fn(name="g")
    async def g(*, context):
        ch = context.channel()
        d = await ch.ask_text("Proceed?", timeout_s=30, default="later")
        try:
            await ch.ask_text("Again?", timeout_s=10)
        except AskTimeout as exc:
            return [d, exc.timeout_s]

    async with rt_open(home) as rt:
        rt.asks.add_source(NeverAnswers())
        t0 = trio.current_time()
        assert await g() == ["later", 10]
        assert trio.current_time() - t0 == pytest.approx(40)
    (path,) = list(layout.iter_logs())
    expired = [e for e in run_events(layout, path.stem) if isinstance(e, ev.AskExpired)]
    assert [e.reason for e in expired] == ["timeout", "timeout"]


async def test_concurrent_asks_in_one_node_do_not_overwrite_each_other(home, layout):
    @graph_fn(name="g")
    async def g(*, context):
        ch = context.channel()
        results = {}

        async def ask(key):
            results[key] = await ch.ask_text(f"{key}?")

        async with trio.open_nursery() as n:
            n.start_soon(ask, "first")
            n.start_soon(ask, "second")
        return results

    async with rt_open(home, answers=["one", "two"]):
        out = await g()
    assert sorted(out.values()) == ["one", "two"]
    (path,) = list(layout.iter_logs())
    opened = [e.ask_id for e in run_events(layout, path.stem) if isinstance(e, ev.AskOpened)]
    assert len(set(opened)) == 2


def test_console_printer_shows_messages_and_asks():
    out = io.StringIO()
    p = ConsolePrinter(out)
    p(ev.MessageSent(run_id="r", text="hello"))
    p(ev.AskOpened(run_id="r", ask_id="ask-1", ask_kind="approval", prompt="Ship?", options=["Yes", "No"]))
    p(ev.AskAnswered(run_id="r", ask_id="ask-1", answer="Yes", by="script"))
    assert out.getvalue().splitlines() == ["hello", "❓ Ship?  [1) Yes / 2) No]", "→ Yes  (answered by script)"]


async def test_console_answers_concurrent_asks_one_at_a_time_saying_which(home, layout):
    """Two asks open at once, lines arrive on stdin after both are waiting: each line answers
    the ask the console said it is answering, and neither ask is left waiting forever."""
    import os

    r, w = os.pipe()
    out = io.StringIO()
    with os.fdopen(r) as stream:
        source = ConsoleSource(StdinLines(stream), stream=out)

        @graph_fn(name="g")
        async def g(*, context):
            ch = context.channel()
            got = {}

            async def ask(prompt):
                got[prompt] = await ch.ask_text(prompt)

            async with trio.open_nursery() as n:
                n.start_soon(ask, "What's your name?")
                n.start_soon(ask, "How old are you?")
            return got

        async with rt_open(home) as rt:
            rt.asks.add_source(source)
            result = {}

            async def run_it():
                result["out"] = await g()

            with trio.fail_after(10):  # a hang detector: a reader that is never woken
                async with trio.open_nursery() as n:
                    n.start_soon(run_it)
                    while len(rt.asks.pending) < 2:
                        await trio.testing.wait_all_tasks_blocked()
                    os.write(w, b"Ada\n42\n")
                    os.close(w)
    lines = out.getvalue().splitlines()
    turns = [(lines[i][2:], lines[i + 1][2:]) for i, line in enumerate(lines) if line.startswith("↳ ")]
    assert sorted(turns) == sorted(result["out"].items()) and len(turns) == 2, lines
