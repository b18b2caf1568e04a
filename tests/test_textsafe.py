"""Untrusted run text on a terminal (issue 14, defect 2): ``aethergraph.runtime.textsafe`` and the CLI.

Every string a run writes can carry terminal control sequences. ``visible``/``one_line`` show
them instead of passing them on; ``ag show``, ``ag tail``, ``ag runs`` and ``ag asks`` print
run-derived text through them. (The dashboard's side is in test_tui_pilot.py.)
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import trio
import trio.testing

from aethergraph import graph_fn
from aethergraph.runtime.sidecar.client import find_runtimes
from aethergraph.runtime.textsafe import HOSTILE, one_line, visible

from .agproc import ag_cmd
from .conftest import ag, in_background, rt_open
from .test_tui_support import RUN_HOSTILE, build_hostile_store

# What must never reach a terminal from a run: C0 but newline, DEL, C1, bidi controls.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_hostile_string_is_inert(hostile):
    for shown in (visible(hostile), one_line(hostile), one_line(f"a\n{hostile}\tb")):
        assert not RAW.search(shown.replace("\n", "")), repr(shown)
    assert "\n" not in one_line(f"a\n{hostile}")


def test_what_the_controls_look_like():
    assert visible("\x1b]0;pwned\x07") == "␛]0;pwned␇"
    assert visible("\x1b[2J") == "␛[2J"
    assert visible("\x9b2J") == "\\x9b2J"
    assert visible("a\rb\x7f") == "a␍b␡"
    assert visible("abc\u202edcba") == "abc<U+202E>dcba"
    assert visible("line 1\n\tline 2") == "line 1\n\tline 2"  # multi-line text keeps its shape
    assert one_line("line 1\n\tline 2") == "line 1␊ line 2"
    assert visible("[red]markup[/] ✅ café") == "[red]markup[/] ✅ café"  # not ours to change
    plain = "nothing to see here"
    assert visible(plain) is plain and one_line(plain) is plain  # the common case costs a scan


def test_ag_show_tail_and_runs_print_controls_as_text(home):
    _, h = build_hostile_store(home)
    env = {"AETHERGRAPH_HOME": str(home)}
    for args in (["show", RUN_HOSTILE], ["runs"]):
        out = ag(*args, env=env)
        assert out.returncode == 0, out.stderr
        assert not RAW.search(out.stdout.replace("\n", "")), (args, out.stdout)
        assert "␛]0;pwned␇" in out.stdout, args
    shown = ag("show", RUN_HOSTILE, env=env).stdout
    assert "[red]markup[/]" in shown and "<U+202E>" in shown and "\\x9b2J" in shown
    # `ag tail` of a run that is not live refuses it (interrupted); its one-line error is inert too
    tail = ag("tail", RUN_HOSTILE, env=env)
    assert not RAW.search((tail.stdout + tail.stderr).replace("\n", ""))


async def test_ag_asks_prints_a_hostile_prompt_and_options_as_text(home):
    h = "".join(HOSTILE)

    @graph_fn(name="hostile" + h.replace("/", "").replace("#", ""))
    async def hostile(*, context):
        return await context.channel().ask_choice(f"prompt {h}", [f"opt{h}", "Hold"])

    async with rt_open(home, sidecar=True):
        async with in_background(hostile) as out:
            await trio.testing.wait_all_tasks_blocked()
            assert find_runtimes(str(home))
            listed = await trio.to_thread.run_sync(lambda: ag("asks", env={"AETHERGRAPH_HOME": str(home)}))
            assert listed.returncode == 0, listed.stderr
            assert not RAW.search(listed.stdout.replace("\n", "")), listed.stdout
            assert "prompt ␛]0;pwned␇" in listed.stdout and "[red]markup[/]" in listed.stdout
            from aethergraph.runtime.sidecar.client import SidecarClient

            (advert,) = find_runtimes(str(home))
            async with SidecarClient.connect(advert, client="tester") as c:
                (ask,) = await c.list_asks()
                # `ag tail` follows it live (to its end, which the answer brings)
                tail = await trio.lowlevel.open_process(
                    [*ag_cmd(), "tail", ask.run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env={**os.environ, "AETHERGRAPH_HOME": str(home)})
                followed = b""
                with trio.fail_after(30):
                    # Subscribed once it has printed the run so far (the open ask included).
                    while b"ask_opened" not in followed:
                        followed += await tail.stdout.receive_some(1 << 20)
                    await c.answer(ask.ask_id, "2")
                    while more := await tail.stdout.receive_some(1 << 20):
                        followed += more
                    await tail.wait()
    assert out.outcome == "Hold"
    text = followed.decode()
    assert "ask_answered" in text and "␛]0;pwned␇" in text, text
    assert not RAW.search(text.replace("\n", "")), text
