"""B2's fake in-process job service, the same object for every framework (no I/O), and the
asyncio poller the peers' variants share."""

import asyncio

INTERVAL = 0.05  # seconds between polls
POLLS = 5  # a job is done on its 5th poll


class Jobs:
    """``submit(payload) -> jid`` (0, 1, 2...); ``poll(jid)`` says ``("running", None)`` on polls
    1-4 and ``("done", 2 * payload)`` on poll 5."""

    def __init__(self) -> None:
        self.payloads: list[int] = []
        self.polls: list[int] = []

    def submit(self, payload: int) -> int:
        self.payloads.append(payload)
        self.polls.append(0)
        return len(self.payloads) - 1

    def poll(self, jid: int) -> tuple[str, int | None]:
        self.polls[jid] += 1
        if self.polls[jid] >= POLLS:
            return "done", 2 * self.payloads[jid]
        return "running", None


async def poll_job(jobs: Jobs, jid: int) -> int:
    """One job followed the asyncio way: POLLS times (sleep INTERVAL, poll); its result."""
    for _ in range(POLLS):
        await asyncio.sleep(INTERVAL)
        status, result = jobs.poll(jid)
    assert status == "done", status
    return result
