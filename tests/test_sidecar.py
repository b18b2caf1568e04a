"""The sidecar: answers, cancel and retry from other processes; auth; bad messages; slow clients."""

from __future__ import annotations

import itertools
import json
import math
import os
import stat
import subprocess
import sys
import textwrap
import time
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import wrap_client_stream

from aethergraph import graph_fn
from aethergraph.runtime import events as ev
from aethergraph.runtime.errors import UnknownAsk, UnknownNode, UnknownRun
from aethergraph.runtime.sidecar import protocol as p
from aethergraph.runtime.sidecar import server as sidecar_server
from aethergraph.runtime.sidecar.client import SidecarClient, SidecarError, find_runtimes
from aethergraph.runtime.sidecar.registry import Advert, advert_path, write_advert
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.runtime.store.logfile import read_log

from .agproc import wait_until
from .conftest import TUTORIAL, ag, in_background, rt_open


def pending_asks(cwd):
    out = ag("asks", "--json", cwd=cwd)
    return json.loads(out.stdout) if out.returncode == 0 else []


def live_runs(cwd):
    out = ag("runs", "--live", "--json", cwd=cwd)
    return json.loads(out.stdout) if out.returncode == 0 else []


# -- two real processes ------------------------------------------------------------------------


@pytest.mark.slow
def test_answer_from_another_process_ends_tutorial_failed(tmp_path):
    env = dict(os.environ, AG_DEMO_FAIL_RATE="1", AG_DEMO_TIME_SCALE="0.05")
    proc = subprocess.Popen([sys.executable, str(TUTORIAL)], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (ask,) = wait_until(lambda: pending_asks(tmp_path), what="the retry ask")
        assert "Retry? (yes/no)" in ask["prompt"]
        answered = ag("answer", ask["ask_id"], "no", cwd=tmp_path)
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.strip() == f"answered {ask['ask_id']}: no"
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "→ no  (answered by ag answer (sidecar))" in out
    assert "Not retrying; stopping here." in out
    runs = json.loads(ag("runs", "--json", cwd=tmp_path).stdout)
    assert runs[0]["status"] == "failed"
    shown = json.loads(ag("show", runs[0]["run_id"], "--json", cwd=tmp_path).stdout)
    answers = [e for e in shown["events"] if e["type"] == "ask_answered"]
    assert [(a["answer"], a["by"]) for a in answers] == [("no", "ag answer (sidecar)")]
    # the runtime is gone, and so is its advert
    assert ag("asks", cwd=tmp_path).returncode == 2


STUCK = textwrap.dedent(
    """
    import trio
    from aethergraph import graph_fn, tool

    attempts = []

    @tool(outputs=["status"])
    async def poll_job():
        attempts.append(1)
        if len(attempts) == 1:
            await trio.sleep_forever()   # the first poll hangs, as remote APIs sometimes do
        return "done"

    @graph_fn(name="job")
    async def job(*, context):
        await context.channel().send_text("polling")
        return await poll_job()

    @tool()
    async def hang():
        await trio.sleep_forever()

    @graph_fn(name="stuck")
    async def stuck(*, context):
        await hang()
    """
)


@pytest.mark.slow
def test_cancel_a_stuck_node_from_another_process(tmp_path, spawn_ag):
    (tmp_path / "stuck.py").write_text(STUCK)
    proc = spawn_ag("run", "stuck.py:stuck")
    try:
        (run,) = wait_until(lambda: live_runs(tmp_path), what="the live run")
        assert "stuck/hang" in run["nodes"]
        cancelled = ag("cancel", run["run_id"], "stuck/hang", "--reason", "hung for an hour", cwd=tmp_path)
        assert cancelled.returncode == 0, cancelled.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1
    shown = json.loads(ag("show", run["run_id"], "--json", cwd=tmp_path).stdout)
    assert shown["run"]["status"] == "cancelled"
    cancels = [e for e in shown["events"] if e["type"] == "node_cancelled"]
    assert (cancels[0]["node"], cancels[0]["reason"], cancels[0]["by"]) == ("stuck/hang", "hung for an hour", "ag cancel (sidecar)")
    assert not [e for e in shown["events"] if e["type"] == "node_failed"]


@pytest.mark.slow
def test_retry_a_stuck_poll_from_another_process(tmp_path, spawn_ag):
    (tmp_path / "stuck.py").write_text(STUCK)
    proc = spawn_ag("run", "stuck.py:job")
    try:
        (run,) = wait_until(lambda: [r for r in live_runs(tmp_path) if "job/poll_job" in r["nodes"]], what="the poll")
        retried = ag("retry", run["run_id"], "job/poll_job", cwd=tmp_path)
        assert retried.returncode == 0, retried.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.split("\n", 1)[1]) == {"status": "done"}
    shown = json.loads(ag("show", run["run_id"], "--json", cwd=tmp_path).stdout)
    (r,) = [e for e in shown["events"] if e["type"] == "attempt_retried"]
    assert (r["node"], r["attempt"], r["requested_by"]) == ("job/poll_job", 1, "ag retry (sidecar)")


def test_cli_without_a_live_runtime_says_so(tmp_path):
    StoreLayout.at(tmp_path / "store").ensure()
    for args, says in ((["asks"], "no live runtime"), (["answer", "ask-123", "x"], "no open ask ask-123"),
                       (["cancel", "20261125-000000-abcdef"], "no live runtime"),
                       (["retry", "20261125-000000-abcdef", "g/n"], "no live runtime")):
        out = ag(*args, cwd=tmp_path)
        assert out.returncode == 2, args
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (args, out.stderr)


async def test_stale_adverts_are_ignored_by_readers_and_removed_by_the_next_runtime(tmp_path, home, layout):
    """An advert of an earlier version (no lock) whose pid is gone; readers skip it and write
    nothing, the next runtime that opens a sidecar on the store removes it (and its socket)."""
    layout.ensure()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    sock = layout.runtimes_dir / "999-dead.sock"
    stale = Advert(runtime_id="999-dead", pid=int(dead.stdout), host=os.uname().nodename, started=0.0,
                   protocol=1, unix=str(sock))
    write_advert(layout, stale)
    sock.touch()
    assert find_runtimes(str(layout.home)) == []
    out = await trio.to_thread.run_sync(lambda: ag("asks", cwd=tmp_path))
    assert out.returncode == 2 and "no live runtime" in out.stderr
    assert advert_path(layout, "999-dead").exists() and sock.exists()  # readers never write
    async with rt_open(home, sidecar=True):
        assert not advert_path(layout, "999-dead").exists() and not sock.exists()


async def test_an_advert_s_paths_are_not_trusted(tmp_path, home, layout):
    """Removing a dead runtime's advert unlinks only the socket and token a runtime of that id
    would have made, whatever paths the advert names."""
    layout.ensure()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_advert(layout, Advert(runtime_id="998-dead", pid=int(dead.stdout), host=os.uname().nodename,
                                started=0.0, protocol=1, unix=str(victim), token_file=str(victim)))
    async with rt_open(home, sidecar=True):
        assert not advert_path(layout, "998-dead").exists()
    assert victim.read_text() == "keep me"


# -- in-process: one runtime, real sockets ------------------------------------------------------


async def test_socket_and_advert_are_private(home, layout):
    async with rt_open(home, sidecar=True, tcp=True) as rt:
        (advert,) = find_runtimes(str(home))
        assert stat.S_IMODE(os.stat(advert.unix).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(advert.token_file).st_mode) == 0o600
        assert advert.tcp.startswith("127.0.0.1:")
        assert rt.sidecar.token not in advert_path(layout, advert.runtime_id).read_text()
    assert find_runtimes(str(home)) == []
    assert not os.path.exists(advert.unix) and not os.path.exists(advert.token_file)


async def test_tcp_needs_the_token(home):
    async with rt_open(home, sidecar=True, tcp=True):
        (advert,) = find_runtimes(str(home))
        for token in ("", "not-the-token"):
            with pytest.raises(SidecarError) as info:
                async with SidecarClient.connect(advert, token=token, prefer_tcp=True):
                    pass
            assert info.value.code == p.NOT_AUTHENTICATED
        async with SidecarClient.connect(advert, prefer_tcp=True) as c:  # token from the 0600 file
            assert await c.list_runs() == []


async def _raw_ws(advert, nursery):
    stream = await trio.open_unix_socket(advert.unix)
    return await wrap_client_stream(nursery, stream, "localhost", "/", max_message_size=8 << 20)


async def _expect(ws, op):
    msg = p.SERVER_DECODER.decode(await ws.get_message())
    assert msg.__struct_config__.tag == op, msg
    return msg


async def _send(ws, msg) -> None:
    await ws.send_message(p.ENCODER.encode(msg).decode())


@asynccontextmanager
async def raw_sidecar(home):
    """A runtime's sidecar and a way to open raw websockets to it: the protocol without the
    client's manners (out of order, wrong versions, too big)."""
    async with rt_open(home, sidecar=True):
        (advert,) = find_runtimes(str(home))
        async with trio.open_nursery() as n:
            yield lambda: _raw_ws(advert, n)
            n.cancel_scope.cancel()


async def test_out_of_order_and_bad_hello_are_refused(home):
    async with raw_sidecar(home) as connect:
        ws = await connect()
        await _send(ws, p.ListRuns(id=1))
        err = await _expect(ws, "error")
        assert err.code == p.NOT_AUTHENTICATED
        ws2 = await connect()
        await _send(ws2, p.Hello(protocol=99))
        assert (await _expect(ws2, "error")).code == p.BAD_PROTOCOL
        ws3 = await connect()
        await _send(ws3, p.Hello(protocol=1, client="t"))
        await _expect(ws3, "welcome")
        await _send(ws3, p.Hello(protocol=1))
        assert (await _expect(ws3, "error")).code == p.BAD_MESSAGE
        await _send(ws3, p.ListRuns(id=7))
        assert (await _expect(ws3, "reply")).id == 7


async def test_oversized_message_gets_an_error_and_the_connection_lives(home):
    async with raw_sidecar(home) as connect:
        ws = await connect()
        await _send(ws, p.Hello(protocol=1))
        await _expect(ws, "welcome")
        await _send(ws, p.Answer(id=2, ask_id="x", value="y" * (p.MAX_MESSAGE_BYTES + 10)))
        assert (await _expect(ws, "error")).code == p.TOO_LARGE
        await _send(ws, p.ListAsks(id=3))
        assert (await _expect(ws, "reply")).result == []


junk = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(max_size=300),
    st.dictionaries(st.sampled_from(["op", "id", "run_id", "ask_id", "value", "node", "sub", "after"]),
                    st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3)),
                    max_size=5).map(lambda d: json.dumps(d)),
    st.sampled_from(["subscribe", "answer", "cancel", "retry", "list_runs", "unsubscribe", "nope"]).flatmap(
        lambda op: st.fixed_dictionaries({"op": st.just(op)}, optional={
            "id": st.integers(-5, 5), "run_id": st.text(max_size=30), "ask_id": st.text(max_size=10),
            "value": st.text(max_size=10), "node": st.text(max_size=10), "sub": st.integers(-2, 2),
        })).map(json.dumps),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(junk, min_size=1, max_size=8))
def test_malformed_messages_never_take_the_server_down(home, messages):
    async def main():
        async with rt_open(home, sidecar=True):
            (advert,) = find_runtimes(str(home))
            async with trio.open_nursery() as n:
                ws = await _raw_ws(advert, n)
                await _send(ws, p.Hello(protocol=1))
                await _expect(ws, "welcome")
                for text in messages:
                    await ws.send_message(text)
                    reply = p.SERVER_DECODER.decode(await ws.get_message())
                    assert reply.__struct_config__.tag in ("error", "reply", "live", "events")
                    if reply.__struct_config__.tag == "reply" and not reply.ok:
                        assert reply.error.code in (p.BAD_MESSAGE, p.UNKNOWN_RUN, p.UNKNOWN_NODE, p.UNKNOWN_ASK)
                # still serving, on this connection and on a new one
                await _send(ws, p.ListRuns(id=424242))
                while True:
                    msg = p.SERVER_DECODER.decode(await ws.get_message())
                    if msg.__struct_config__.tag == "reply" and msg.id == 424242:
                        break
                async with SidecarClient.connect(advert) as c:
                    assert await c.list_asks() == []
                await ws.aclose()
                n.cancel_scope.cancel()

    trio.run(main)


async def test_invalid_answer_is_refused_to_that_client_and_the_ask_stays_open(home, layout):
    @graph_fn(name="pick")
    async def pick(*, context):
        return await context.channel().ask_choice("Colour?", ["red", "green"])

    async with rt_open(home, sidecar=True):
        async with in_background(pick) as out:
            await trio.testing.wait_all_tasks_blocked()
            (advert,) = find_runtimes(str(home))
            async with SidecarClient.connect(advert, client="tester") as c:
                (ask,) = await c.list_asks()
                assert (ask.kind, ask.options) == ("choice", ["red", "green"])
                with pytest.raises(SidecarError) as info:
                    await c.answer(ask.ask_id, "blue")
                assert info.value.code == p.INVALID_ANSWER and "not one of the options" in str(info.value)
                assert len(await c.list_asks()) == 1
                assert await c.answer(ask.ask_id, "GREEN") == "green"
                with pytest.raises(SidecarError) as info:
                    await c.answer(ask.ask_id, "red")
                assert info.value.code == p.UNKNOWN_ASK
    assert out.outcome == "green"


def test_every_error_code_comes_back_as_the_class_that_raised_it():
    """One vocabulary on both ends: what the server sends of an error (code and message) is
    raised by the client as the same class of runtime/errors.py; a code from a newer runtime
    is still an error with that code."""
    assert {p.UNKNOWN_RUN, p.UNKNOWN_NODE, p.UNKNOWN_ASK, p.INVALID_ANSWER, p.CANNOT_RESUME,
            p.BAD_MESSAGE, p.NOT_AUTHENTICATED, p.BAD_PROTOCOL, p.TOO_LARGE, p.INTERNAL} <= set(SidecarError.by_code)
    for code, cls in SidecarError.by_code.items():
        back = SidecarError.from_wire(code, "why")
        assert type(back) is cls and back.code == code and str(back) == "why"
        assert p.error_body(back) == p.ErrorBody(code=code, message="why")  # and on again unchanged
    newer = SidecarError.from_wire("from_the_future", "why")
    assert type(newer) is SidecarError and newer.code == "from_the_future" and str(newer) == "why"


async def test_cancel_and_retry_say_which_thing_is_unknown(home):
    """An unknown run is ``unknown_run``, a node the run is not running is ``unknown_node``,
    each raised by the client as its class (not any engine error as ``unknown_node``)."""

    @graph_fn(name="waits")
    async def waits(*, context):
        return await context.channel().ask_text("Go?")

    async with rt_open(home, sidecar=True):
        async with trio.open_nursery() as n:
            n.start_soon(waits)
            await trio.testing.wait_all_tasks_blocked()
            (advert,) = find_runtimes(str(home))
            async with SidecarClient.connect(advert, client="tester") as c:
                (run,) = await c.list_runs()
                with pytest.raises(UnknownNode) as info:
                    await c.cancel(run.run_id, "waits/nope")
                assert info.value.code == p.UNKNOWN_NODE and "waits/nope" in str(info.value)
                with pytest.raises(UnknownNode):
                    await c.retry(run.run_id, "waits/nope")
                with pytest.raises(UnknownRun) as info:
                    await c.cancel("20200101-000000-abcdef")
                assert info.value.code == p.UNKNOWN_RUN and "not running here" in str(info.value)
                with pytest.raises(UnknownAsk):
                    await c.answer("ask-nope", "x")
                (ask,) = await c.list_asks()
                assert ask.runtime_id == advert.runtime_id and run.runtime_id == advert.runtime_id
                await c.answer(ask.ask_id, "yes")


@asynccontextmanager
async def started(home, *fns):
    """A runtime with a sidecar running ``fns`` (each waits on a gate the test opens once it
    watches): the runtime and its advert."""
    async with rt_open(home, sidecar=True) as rt:
        async with trio.open_nursery() as nursery:
            for fn in fns:
                nursery.start_soon(fn)
            await trio.testing.wait_all_tasks_blocked()
            (advert,) = find_runtimes(str(home))
            yield rt, advert


async def test_slow_subscriber_is_dropped_and_resumes_without_gaps(home, monkeypatch):
    monkeypatch.setattr(sidecar_server, "SUBSCRIBER_QUEUE", 50)
    drops = []
    real_drop = sidecar_server.Subscription._drop

    def counting_drop(self, reason):
        drops.append(reason)
        real_drop(self, reason)

    monkeypatch.setattr(sidecar_server.Subscription, "_drop", counting_drop)
    n_events = 2000
    gate = trio.Event()

    @graph_fn(name="burst")
    async def burst(*, context):
        await gate.wait()
        mem = context.memory()
        for i in range(n_events):
            await mem.record("tick", {"i": i})

    async with started(home, burst) as (rt, advert):
        (run_id,) = rt.runs
        async with SidecarClient.connect(advert) as c:
            seqs = []
            async with c.subscribe(run_id) as events:
                gate.set()
                async for e in events:
                    seqs.append(e.seq)
                    if type(e) is ev.RunFinished:
                        break
                    if len(seqs) % 100 == 0:
                        await trio.sleep(0.01)  # a slow consumer
    assert drops, "the subscriber was never too slow; the test did not test resyncing"
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == n_events + 4  # run_started, node_started, ..., node_finished, run_finished


async def test_a_subscription_to_every_run_sees_interleaved_runs_in_the_order_emitted(home, layout):
    """Two runs recording at once share the writer's batches, interleaved: a subscriber to
    every run gets each event once, in the order they were emitted, as their logs hold them."""
    n_events = 300
    gate = trio.Event()
    order = itertools.count()

    @graph_fn(name="pair")
    async def pair(tag, *, context):
        await gate.wait()
        mem = context.memory()
        for i in range(n_events):
            await mem.record("tick", {"tag": tag, "k": next(order)})  # k: the emitting order
            if i % 3 == 0:
                await trio.sleep(0)

    async with started(home, partial(pair, tag="a"), partial(pair, tag="b")) as (rt, advert):
        run_ids = set(rt.runs)
        got = []
        async with SidecarClient.connect(advert) as c:
            async with c.subscribe(live_marker=True) as events:
                async for e in events:
                    if not isinstance(e, ev.Event):  # live: the snapshot is in
                        gate.set()
                        continue
                    got.append(e)
                    if sum(type(x) is ev.RunFinished for x in got) == 2:
                        break
    assert len(run_ids) == 2
    for run_id in run_ids:
        logged = [r.event for r in read_log(layout.run_log(run_id))]
        assert [e for e in got if e.run_id == run_id] == logged
    ticks = [e for e in got if type(e) is ev.MemoryRecorded]
    assert [e.data["k"] for e in ticks] == list(range(2 * n_events))
    switches = sum(a.run_id != b.run_id for a, b in zip(ticks, ticks[1:]))
    assert switches > 10, "the runs did not interleave; the test did not test merging"


async def test_a_run_that_ends_between_subscribe_and_snapshot_is_still_replayed(home, layout, monkeypatch):
    """A subscriber to every run follows the feed from its Subscribe; the runs live then are
    replayed from their logs. One that ends before the snapshot is read (the snapshot waits
    for the writer first) was left out: its events before the Subscribe reached nobody."""
    gate = trio.Event()

    @graph_fn(name="short")
    async def short(*, context):
        await gate.wait()
        await context.memory().record("tick", {"i": 1})

    async with started(home, short) as (rt, advert):
        (run_id,) = rt.runs
        real_start = sidecar_server.Subscription.start

        async def start_after_the_run_ended(self):
            gate.set()
            while run_id in rt.runs:  # the run ends, and leaves the runtime's live runs
                await trio.sleep(0.01)
            await real_start(self)

        monkeypatch.setattr(sidecar_server.Subscription, "start", start_after_the_run_ended)
        got = []
        async with SidecarClient.connect(advert) as c:
            async with c.subscribe() as events:
                with trio.fail_after(20):
                    async for e in events:
                        got.append(e)
                        if type(e) is ev.RunFinished:
                            break
    assert got == [r.event for r in read_log(layout.run_log(run_id))]


async def test_a_subscription_since_a_time_gets_only_the_events_from_then(home, layout):
    since = math.inf  # set once the subscription is live
    gate = trio.Event()

    @graph_fn(name="clock")
    async def clock(*, context):
        await gate.wait()
        mem = context.memory()
        after = 0
        while after < 20:  # some events before ``since``, then 20 after it
            event = await mem.record("tick", {"t": time.time()})
            after += event.ts >= since
            await trio.sleep(0.002)

    async with started(home, clock) as (rt, advert):
        (run_id,) = rt.runs
        got = []
        async with SidecarClient.connect(advert) as c:
            since = time.time() + 0.05
            async with c.subscribe(run_id, since=since, live_marker=True) as events:
                async for e in events:
                    if not isinstance(e, ev.Event):
                        gate.set()
                        continue
                    got.append(e)
                    if type(e) is ev.RunFinished:
                        break
    logged = [r.event for r in read_log(layout.run_log(run_id))]
    assert any(e.ts < since for e in logged)
    assert got == [e for e in logged if e.ts >= since]


async def test_subscribe_to_a_finished_run_replays_its_log(home):
    @graph_fn(name="short")
    async def short(*, context):
        await context.memory().record("k", {"x": 1})

    async with rt_open(home, sidecar=True):
        run_id = None

        @graph_fn(name="outer")
        async def outer(*, context):
            return context.run_id

        run_id = await outer()
        (advert,) = find_runtimes(str(home))
        async with SidecarClient.connect(advert) as c:
            got = []
            async with c.subscribe(run_id, live_marker=True) as events:
                async for e in events:
                    got.append(e)
                    if not isinstance(e, ev.Event):
                        break
            assert [type(e).__name__ for e in got[:-1]] == ["RunStarted", "NodeStarted", "NodeFinished", "RunFinished"]
            with pytest.raises(SidecarError) as info:
                async with c.subscribe("20200101-000000-abcdef"):
                    pass
            assert info.value.code == p.UNKNOWN_RUN


async def test_an_advert_that_cannot_be_updated_does_not_end_the_runtime(home, layout, monkeypatch, caplog):
    """The disk or the fd table full while runs start: the advert keeps its last word (clients
    still reach the runtime), a warning says its run list is behind, and it is brought up to date
    once writes work again. Before, the failed rewrite ended the sidecar's task and with it the
    runtime and every run in it."""
    import errno

    gate = trio.Event()

    @graph_fn(name="held")
    async def held(*, context):
        await gate.wait()
        return "done"

    real_open = os.open
    full = {"on": False}

    def opener(path, flags, mode=0o777, *a, **kw):
        if full["on"] and str(path).endswith(".json.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, mode, *a, **kw)

    monkeypatch.setattr(os, "open", opener)
    async with rt_open(home, sidecar=True):
        (before,) = find_runtimes(str(home))
        assert before.runs == []
        full["on"] = True
        async with trio.open_nursery() as nursery:
            outcome = {}

            async def run_it():
                outcome["value"] = await held()

            nursery.start_soon(run_it)
            with trio.fail_after(10):
                while "cannot update this runtime's advert" not in caplog.text:
                    await trio.sleep(0.05)
            (stale,) = find_runtimes(str(home))
            assert stale.runs == []  # behind, and still there to connect to
            async with SidecarClient.connect(stale, client="tester") as c:
                (run,) = await c.list_runs()
            full["on"] = False
            with trio.fail_after(10):
                while find_runtimes(str(home))[0].runs != [run.run_id]:
                    await trio.sleep(0.05)
            gate.set()
        assert outcome["value"] == "done"
