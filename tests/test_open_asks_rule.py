"""Which asks are open: one rule (``runtime.info.track_asks``), read the same way by a run's
log (``RunSummary``, ``ag show``, the dashboard) and written into the index's table.

The index keeps its own table (it answers "open asks" with one query over every run), so the
rule has two materialisations: this test holds them to the same answer over any sequence of
ask events across runs — opened, answered, expired, a run that ends with asks open, a run
resumed and asking again — with a real log and a real SQLite index.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aethergraph.runtime import events as ev
from aethergraph.runtime.history import summarize
from aethergraph.runtime.info import track_asks
from aethergraph.runtime.store.index import Index
from aethergraph.runtime.store.layout import StoreLayout

RUNS = ("20261201-120000-aaaaaa", "20261201-120000-bbbbbb")
ASKS = ("ask-1", "ask-2", "ask-3")

step = st.tuples(
    st.sampled_from(["open", "answer", "expire", "finish", "resume"]),
    st.sampled_from(RUNS),
    st.sampled_from(ASKS),
)


def _events(steps) -> list[ev.Event]:
    out: list[ev.Event] = [ev.RunStarted(run_id=r, graph="g", pid=1, host="h") for r in RUNS]
    attempts = dict.fromkeys(RUNS, 1)
    for action, run, ask in steps:
        ask_id = f"{run[-6:]}-{ask}"  # an ask belongs to one run
        if action == "open":
            out.append(ev.AskOpened(run_id=run, node="g", ask_id=ask_id, ask_kind="text", prompt="?"))
        elif action == "answer":
            out.append(ev.AskAnswered(run_id=run, node="g", ask_id=ask_id, answer="yes", by="test"))
        elif action == "expire":
            out.append(ev.AskExpired(run_id=run, node="g", ask_id=ask_id))
        elif action == "finish":
            out.append(ev.RunFinished(run_id=run, status=ev.SUCCEEDED))
        else:
            attempts[run] += 1
            out.append(ev.RunResumed(run_id=run, attempt=attempts[run], pid=2, host="h"))
    seqs = dict.fromkeys(RUNS, 0)
    for i, e in enumerate(out):
        seqs[e.run_id] += 1
        e.seq, e.ts = seqs[e.run_id], 1_796_000_000.0 + i
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(step, max_size=30))
def test_the_index_and_the_log_agree_on_the_open_asks(tmp_path_factory, steps):
    events = _events(steps)
    by_rule: dict = {}
    for e in events:
        track_asks(by_rule, e)

    layout = StoreLayout.at(tmp_path_factory.mktemp("store")).ensure()
    for run in RUNS:
        path = layout.run_log(run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(ev.encode(e) + b"\n" for e in events if e.run_id == run))
    index = Index(layout)
    try:
        index.catch_up()
        in_index = {a.ask_id for a in index.open_asks()}
        counted = {r.run_id: r.pending_asks for r in index.runs(limit=10)}
    finally:
        index.close()

    assert in_index == set(by_rule)
    for run in RUNS:
        from_log = summarize(run, [e for e in events if e.run_id == run])
        assert set(from_log.open_asks) == {k for k, a in by_rule.items() if a.run_id == run}
        assert counted[run] == len(from_log.open_asks)
