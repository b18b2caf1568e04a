"""Every kind of event reads the same in ``ag show`` as on the dashboard's timeline.

The kinds come from the event union itself (``events.AnyEvent``), so a kind added there without
a description here fails this test: ``ag show`` once printed an empty detail for two of them.
"""

from __future__ import annotations

import typing

import msgspec
import pytest

from aethergraph.runtime import events as ev
from aethergraph.runtime.describe import describe, tag
from aethergraph.runtime.store.layout import StoreLayout
from aethergraph.tui.format import event_line

from .conftest import ag

RUN = "20261201-120000-d35cbe"
T0 = 1_796_000_000.0


def _sample(tp: msgspec.inspect.Type) -> object:
    """A plain value of a field's type (as JSON), for an event that carries it."""
    if isinstance(tp, msgspec.inspect.UnionType):
        tp = next(t for t in tp.types if not isinstance(t, msgspec.inspect.NoneType))
    if isinstance(tp, msgspec.inspect.StrType):
        return "text"
    if isinstance(tp, msgspec.inspect.BoolType):
        return True
    if isinstance(tp, (msgspec.inspect.IntType, msgspec.inspect.FloatType)):
        return 3
    if isinstance(tp, (msgspec.inspect.ListType, msgspec.inspect.TupleType, msgspec.inspect.VarTupleType)):
        item = getattr(tp, "item_type", None) or tp.item_types[0]
        return [_sample(item)]
    if isinstance(tp, msgspec.inspect.DictType):
        return {"k": _sample(tp.value_type)}
    if isinstance(tp, msgspec.inspect.StructType):
        return {f.encode_name: _sample(f.type) for f in tp.fields if f.required}
    return {"any": 1}


def every_kind() -> list[ev.Event]:
    """One event of each kind of the union, every required field set (run-level ones on the
    run's node, the others on a child node)."""
    kinds = typing.get_args(ev.AnyEvent)
    assert len(kinds) == len(ev.EVENT_TYPES) > 20
    out = []
    for seq, cls in enumerate(kinds, 1):
        info = msgspec.inspect.type_info(cls)
        fields = {f.encode_name: _sample(f.type) for f in info.fields if f.required}
        fields.update(run_id=RUN, seq=seq, ts=T0 + seq, node="" if cls is ev.RunStarted else "g/child")
        out.append(msgspec.convert(fields, cls))
    return out


def test_every_kind_of_the_union_is_described():
    for e in every_kind():
        assert describe(e).strip(), f"{tag(e)} says nothing"


def test_ag_show_says_what_the_dashboard_says_for_every_kind(home):
    events = every_kind()
    layout = StoreLayout.at(home).ensure()
    path = layout.run_log(RUN)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(ev.encode(e) + b"\n" for e in events))

    shown = ag("show", RUN, env={"AETHERGRAPH_HOME": str(home)})
    assert shown.returncode == 0, shown.stderr
    rows = shown.stdout.split("TIME ", 1)[1].splitlines()[1:]
    assert len(rows) == len(events)
    for e, row in zip(events, rows):
        assert tag(e) in row.split()
        dashboard = event_line(e, T0).plain  # the timeline row: time, label, node, detail
        detail = describe(e)
        assert detail and row.endswith(detail), (tag(e), row)
        assert dashboard.endswith(detail), (tag(e), dashboard)


@pytest.mark.parametrize("kind", ["run_resumed", "artifact_pinned", "stream_delta", "job_state"])
def test_the_kinds_that_once_said_nothing(kind):
    (e,) = [e for e in every_kind() if tag(e) == kind]
    assert describe(e)
