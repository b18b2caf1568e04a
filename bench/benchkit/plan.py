"""What a benchmark run measures: one ``Case`` per (workload, framework, variant, N).

Every case is one command; each repetition runs it as a fresh process. ``group`` names the
like-with-like comparison a case belongs to: a peer's figure is divided by the figure of our
case with the same group (``ref=True``), so a ratio never compares durable with in-memory
without the table saying so.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .venvs import BENCH

DEFAULT_REPS = 5
SLOW_REPS = 3  # for measurements that take minutes (spec: 3 instead of 5)
TIMEOUT_S = 300
WORKLOADS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12")
# `--quick` (under 3 minutes): leaves out the workloads that first build a 1,000,000-event store.
QUICK_WORKLOADS = ("B1", "B2", "B3", "B4", "B6", "B8", "B9")
FRAMEWORKS = ("ours", "upstream", "langgraph")


@dataclass
class Case:
    workload: str
    framework: str
    variant: str
    n: int | None
    argv: list[str]
    group: str  # like-with-like group; ratios are taken against ours in the same group
    storage: str = "-"
    ref: bool = False  # ours: the figure peers in the same group are compared with
    reps: int = DEFAULT_REPS
    timeout_s: float = TIMEOUT_S
    process: bool = False  # B4: the measurement IS the whole process (timed from outside)
    # B9: the measurement creates thousands of files and is charged for how the filesystem
    # treats files deleted just before it (see execute.settle_fs); it starts on a settled disk
    # and its folders are deleted only after the workload's last measurement.
    settle_fs: bool = False
    note: str = ""
    results: list[dict] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.workload} {self.framework} {self.variant} n={self.n}"

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


def _script(py: Path, rel: str, variant: str, n: int) -> list[str]:
    return [str(py), str(BENCH / rel), "--variant", variant, "--n", str(n)]


def _ours(py: Path, workload: str, variant: str, n: int, **kw) -> Case:
    """One of our cases: ``bench/ours/<workload>.py`` run as a script; the reference of its group."""
    argv = _script(py, f"ours/{workload.lower()}.py", variant, n)
    return Case(workload, "ours", variant, n, argv, ref=True, **kw)


def _ours_only(make: Callable[[Path], list[Case]]) -> Callable[[Path | None, Path | None], list[Case]]:
    """A workload no peer has (our store, sidecar or dashboard): no cases without our interpreter."""

    @functools.wraps(make)
    def cases(ours: Path | None, peers: Path | None) -> list[Case]:
        return make(ours) if ours else []

    return cases


def b1(ours: Path | None, peers: Path | None) -> list[Case]:
    cases: list[Case] = []
    n = 2000
    if ours:
        for v in ("top", "top+record", "in-run", "in-run+record"):
            cases.append(Case("B1", "ours", v, n, _script(ours, "ours/b1.py", v, n), group=v,
                              ref=True, storage="log file, batch" if "record" in v else "-"))
        # The same chain with @tool steps, dynamic and as a static @graphify graph (issue 18:
        # per-node overhead within 2x of the dynamic form).
        for v, how in (("in-run-tool", "@tool steps awaited in a graph_fn"),
                       ("graphify", "static @graphify chain of @tool nodes, build included")):
            cases.append(Case("B1", "ours", v, n, _script(ours, "ours/b1.py", v, n), group="in-run",
                              note=how))
    if peers:
        for v in ("top", "top+record", "in-run", "in-run+record"):
            slow = "record" in v  # ~30 ms per durable append upstream: a minute per run
            cases.append(Case("B1", "upstream", v, n, _script(peers, "peers/upstream_ag/b1.py", v, n),
                              group=v, reps=SLOW_REPS if slow else DEFAULT_REPS,
                              storage="SQLite event log" if slow else "-"))
        for shape in ("top", "in-run"):
            for cp in ("none", "memory", "sqlite"):
                for rec in ("-", "state", "store"):
                    v = f"{shape}/{cp}/{rec}"
                    storage = {"none": "-", "memory": "in-memory", "sqlite": "SQLite file"}[cp]
                    if rec == "store":
                        storage += (" + InMemoryStore" if cp != "sqlite" else " + SQLite store")
                    elif rec == "state":
                        storage += " (event in state)"
                    slow = cp == "sqlite" and shape == "top"
                    group = shape + ("" if rec == "-" else "+record")
                    cases.append(Case("B1", "langgraph", v, n, _script(peers, "peers/lg/b1.py", v, n),
                                      group=group, storage=storage,
                                      reps=SLOW_REPS if slow else DEFAULT_REPS))
    return cases


def b2(ours: Path | None, peers: Path | None) -> list[Case]:
    cases: list[Case] = []
    for n in (1000, 10_000):
        if ours:
            for v, how in (("ag.sleep", "nursery children, shared timer"),
                           ("trio.sleep", "nursery children, trio.sleep"),
                           ("tool-nodes", "@tool child nodes, shared timer"),
                           ("map", "context.map of @tool nodes, limit N"),
                           ("graphify", "static @graphify graph of N @tool nodes")):
                cases.append(Case("B2", "ours", v, n, _script(ours, "ours/b2.py", v, n),
                                  group=f"n={n}", ref=v == "ag.sleep", note=how))
        if peers:
            cases.append(Case("B2", "upstream", "gather", n,
                              _script(peers, "peers/upstream_ag/b2.py", "gather", n),
                              group=f"n={n}", note="asyncio tasks in the graph_fn"))
            cases.append(Case("B2", "langgraph", "gather", n, _script(peers, "peers/lg/b2.py", "gather", n),
                              group=f"n={n}", note="asyncio tasks in one node"))
            cases.append(Case("B2", "langgraph", "send", n, _script(peers, "peers/lg/b2.py", "send", n),
                              group=f"n={n}", note="one Send task (node) per job"))
    return cases


def b3(ours: Path | None, peers: Path | None) -> list[Case]:
    cases: list[Case] = []
    for n in (100_000, 10_000):
        if ours:
            cases.append(Case("B3", "ours", "batch", n, _script(ours, "ours/b3.py", "batch", n),
                              group=f"n={n}", ref=True, storage="log file + SQLite index (durable)"))
    if peers:
        cases.append(Case("B3", "langgraph", "memory", 100_000,
                          _script(peers, "peers/lg/b3.py", "memory", 100_000), group="n=100000",
                          storage="InMemoryStore (not durable)"))
        cases.append(Case("B3", "langgraph", "sqlite", 100_000,
                          _script(peers, "peers/lg/b3.py", "sqlite", 100_000), group="n=100000",
                          storage="AsyncSqliteStore file (durable)", reps=SLOW_REPS,
                          timeout_s=1200, note="~4-5 min per repetition here"))
        cases.append(Case("B3", "langgraph", "sqlite", 10_000,
                          _script(peers, "peers/lg/b3.py", "sqlite", 10_000), group="n=10000",
                          storage="AsyncSqliteStore file (durable)", reps=SLOW_REPS,
                          note="also at N = 10,000, like with like for upstream"))
        cases.append(Case("B3", "upstream", "default", 10_000,
                          _script(peers, "peers/upstream_ag/b3.py", "default", 10_000),
                          group="n=10000", storage="SQLite event log (durable)", reps=SLOW_REPS,
                          timeout_s=1200, note="N = 10,000 only: ~20-35 events/s here"))
    return cases


def b4(ours: Path | None, peers: Path | None) -> list[Case]:
    cases: list[Case] = []

    def proc(framework, variant, argv, group, ref=False, note=""):
        cases.append(Case("B4", framework, variant, None, argv, group=group, ref=ref,
                          process=True, note=note))

    if ours:
        proc("ours", 'python -c "pass"', [str(ours), "-c", "pass"], "pass", ref=True)
        proc("ours", 'python -c "import aethergraph"', [str(ours), "-c", "import aethergraph"],
             "import", ref=True, note="names resolve lazily")
        proc("ours", "from aethergraph import graph_fn, tool, open_runtime",
             [str(ours), "-c", "from aethergraph import graph_fn, tool, open_runtime"], "first line",
             ref=True, note="what a script's first line costs")
        ag = ours.parent / "ag"
        if ag.exists():
            proc("ours", "ag --help", [str(ag), "--help"], "cli", ref=True, note="whole process")
    if peers:
        proc("upstream", 'python -c "pass"', [str(peers), "-c", "pass"], "pass")
        proc("upstream", 'python -c "import aethergraph"', [str(peers), "-c", "import aethergraph"],
             "import")
        proc("upstream", "from aethergraph import graph_fn, tool",
             [str(peers), "-c", "from aethergraph import graph_fn, tool"], "first line")
        proc("langgraph", 'python -c "import langgraph.graph"',
             [str(peers), "-c", "import langgraph.graph"], "import")
        proc("langgraph", "from langgraph.graph import StateGraph",
             [str(peers), "-c", "from langgraph.graph import StateGraph"], "first line")
    return cases


@_ours_only
def b5(ours: Path) -> list[Case]:
    """Ours only (no peer has the same store): durable ingest, queries on 1,000,000 events."""
    return [
        _ours(ours, "B5", "strict", 10_000, group="strict", storage="log file, strict (fsync per record)"),
        _ours(ours, "B5", "batch", 100_000, group="batch",
              storage="log file + SQLite index, batch: until queryable"),
        _ours(ours, "B5", "queries-1m", 1_000_000, group="1m", storage="1,000,000 events in 100 runs",
              reps=SLOW_REPS, timeout_s=900,
              note="setup builds the store (~20 s); medians of 30 queries; then a rebuild"),
    ]


@_ours_only
def b6(ours: Path) -> list[Case]:
    """Ours only: the sidecar from another process, over the unix socket."""
    return [
        _ours(ours, "B6", "ask-rtt", 200, group="ask", note="answer sent -> ask_answered seen (node resumed)"),
        _ours(ours, "B6", "nosub", 100_000, group="watch", note="a run recording flat out, nobody watching"),
        _ours(ours, "B6", "subscriber", 100_000, group="watch",
              note="the same run, one subscriber in another process"),
        _ours(ours, "B6", "paced-nosub", 100_000, group="paced",
              note="a run recording at 50,000 events/s, nobody watching"),
        _ours(ours, "B6", "paced-sub", 100_000, group="paced",
              note="the same paced run, one subscriber in another process"),
    ]


@_ours_only
def b7(ours: Path) -> list[Case]:
    """Ours only: the dashboard's first paint on a store of 10,000 runs / 1,000,000 events."""
    return [
        _ours(ours, "B7", "first-paint", 10_000, group="paint", storage="10,000 runs, 1,000,000 events",
              reps=SLOW_REPS, timeout_s=900, note="headless (run_test, 100x30) until the runs table shows rows"),
    ]


@_ours_only
def b8(ours: Path) -> list[Case]:
    """Ours only: keys answered while the dashboard watches a run emitting 1,000 events/s."""
    return [
        _ours(ours, "B8", "keys-under-load", 1_000, group="keys",
              note="headless; j k l t ? esc, 10 rounds, on the run's live detail panel"),
    ]


@_ours_only
def b9(ours: Path) -> list[Case]:
    """Ours only: real process jobs against a plain trio.run_process loop, in one process."""
    return [
        _ours(ours, "B9", "vs-run-process", 1_000, group="jobs", reps=SLOW_REPS, settle_fs=True,
              note="`true` x 1,000, 8 at a time; ProcessJobs and the loop alternate, best of 3 each"),
        _ours(ours, "B9", "queued-10k", 10_000, group="queued", reps=SLOW_REPS, settle_fs=True,
              note="10,000 jobs queued behind one slot"),
    ]


@_ours_only
def b12(ours: Path) -> list[Case]:
    """Ours only: memory().search over 100,000 embedded records of dimension 384."""
    return [
        _ours(ours, "B12", "search", 100_000, group="search", reps=SLOW_REPS,
              note="k=10, 200 queries after one that fills the reader's cache; numpy scan if installed"),
        _ours(ours, "B12", "ingest-off", 100_000, group="ingest", reps=SLOW_REPS,
              note="the same records, no embedder bound"),
    ]


@_ours_only
def b10(ours: Path) -> list[Case]:
    """Ours only: jobs on a dask cluster (started by the script) against a bare Client."""
    return [
        _ours(ours, "B10", "vs-client", 1_000, group="dask", reps=SLOW_REPS,
              note="tiny callables x 1,000; DaskJobs and Client.map + wait alternate, best of 3 each"),
        _ours(ours, "B10", "jobs-10k", 10_000, group="dask-10k", reps=SLOW_REPS,
              note="10,000 jobs through DaskJobs in one run"),
    ]


@_ours_only
def b11(ours: Path) -> list[Case]:
    """Ours only: ``ag tui`` first paint in a real terminal (tmux), locally and over SSH."""
    store = "10,000 runs, 1,000,000 events"
    return [
        _ours(ours, "B11", "local", 10_000, group="local", storage=store, timeout_s=900,
              note="tmux 100x30: spawn until runs rows are on screen (capture-pane)"),
        _ours(ours, "B11", "ssh", 10_000, group="ssh", storage=store, timeout_s=900,
              note="the same through ssh -tt to an sshd on loopback, key login included"),
    ]


def build(ours: Path | None, peers: Path | None, workloads: list[str]) -> dict[str, list[Case]]:
    makers = {"B1": b1, "B2": b2, "B3": b3, "B4": b4, "B5": b5, "B6": b6, "B7": b7, "B8": b8,
              "B9": b9, "B10": b10, "B11": b11, "B12": b12}
    return {w: makers[w](ours, peers) for w in workloads}
