"""B2, LangGraph 1.2.24: fan-out of N pollers in ONE ``ainvoke`` (no checkpointer).

Variants:
- ``gather``: one node submits the N jobs and runs N asyncio tasks (``asyncio.gather``), each
  doing 5 × ``asyncio.sleep(0.05)`` then a poll;
- ``send``: a ``submit`` node fans out with one ``Send("poll", ...)`` per job, so every poller is
  a LangGraph task (node); results are summed by an ``operator.add`` reducer channel.

No ``max_concurrency`` is set (LangGraph runs a superstep's tasks without a default limit).
"""

import asyncio
import operator
import sys
from pathlib import Path
from typing import Annotated, TypedDict

sys.path.append(str(Path(__file__).resolve().parents[2]))  # bench/, for benchkit

import _lg  # noqa: F401  (sets the environment first)
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from benchkit.jobs import Jobs, poll_job
from benchkit.measure import Region, args, emit

VARIANTS = ["gather", "send"]


class State(TypedDict, total=False):
    n: int
    total: Annotated[int, operator.add]


class PollState(TypedDict):
    jid: int


def build(variant: str, jobs_box: list):
    g = StateGraph(State)
    if variant == "gather":
        async def fanout(state: State) -> dict:
            jobs = Jobs()
            jids = [jobs.submit(i) for i in range(state["n"])]
            results = await asyncio.gather(*(poll_job(jobs, jid) for jid in jids))
            return {"total": sum(results)}

        g.add_node("fanout", fanout)
        g.add_edge(START, "fanout")
        g.add_edge("fanout", END)
    else:
        def submit(state: State) -> dict:
            jobs_box[:] = [Jobs()]
            return {"total": 0}

        def fan_out(state: State) -> list[Send]:
            jobs = jobs_box[0]
            return [Send("poll", {"jid": jobs.submit(i)}) for i in range(state["n"])]

        async def poll(state: PollState) -> dict:
            return {"total": await poll_job(jobs_box[0], state["jid"])}

        g.add_node("submit", submit)
        g.add_node("poll", poll)
        g.add_edge(START, "submit")
        g.add_conditional_edges("submit", fan_out, ["poll"])
        g.add_edge("poll", END)
    return g.compile()


async def main(variant: str, n: int) -> None:
    app = build(variant, [])
    assert (await app.ainvoke({"n": 2}))["total"] == 2  # the one warm-up
    with Region() as region:
        total = (await app.ainvoke({"n": n}))["total"]
    assert total == n * (n - 1), total
    emit("B2", "langgraph", variant, n, region)


if __name__ == "__main__":
    a = args(VARIANTS, 10_000)
    asyncio.run(main(a.variant, a.n))
