"""Polling with a deadline, on the runtime's shared timer.

    async for n in aethergraph.poll(0.6, timeout_s=600):
        info = await jobs.poll(job_id)
        if info["status"] in {"succeeded", "failed"}:
            break

The first iteration runs at once; later ones after ``interval_s``. Past the deadline the loop
raises ``PollTimeout`` instead of spinning forever on a job that will never finish.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import trio

from aethergraph.runtime.engine import current_runtime as _current_runtime
from aethergraph.runtime.errors import PollTimeout

T = TypeVar("T")
_park = trio.lowlevel.wait_task_rescheduled
_now = trio.current_time


async def sleep(seconds: float) -> None:
    """Sleep on the runtime's shared timer when a runtime is open, else ``trio.sleep``.

    Cheap with thousands of concurrent sleepers (one timer task wakes them in batches); may
    end up to a millisecond late."""
    rt = _current_runtime.get()
    if rt is None or not rt.timer.running:
        await trio.sleep(seconds)
    elif seconds > 0:
        await _park(rt.timer.park(_now() + seconds))
    elif seconds == 0:
        await trio.lowlevel.checkpoint()
    else:
        raise ValueError(f"sleep length must be >= 0, got {seconds!r}")


async def poll(interval_s: float, *, timeout_s: float | None = None, what: str = "polling") -> AsyncIterator[int]:
    if not interval_s > 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
    rt = _current_runtime.get()
    nap = rt.timer.sleep_until if rt is not None else trio.sleep_until
    deadline = math.inf if timeout_s is None else trio.current_time() + timeout_s
    n = 0
    while True:
        n += 1
        yield n
        wake = trio.current_time() + interval_s
        if wake > deadline:
            await nap(deadline)
            raise PollTimeout(f"{what}: no result within {timeout_s:g}s ({n} polls)")
        await nap(wake)


async def poll_until(
    check: Callable[[], Awaitable[T]],
    *,
    interval_s: float,
    timeout_s: float | None = None,
    done: Callable[[T], Any] = bool,
    what: str = "poll_until",
) -> T:
    """Call ``check()`` every ``interval_s`` until ``done(result)``; return that result."""
    async for _ in poll(interval_s, timeout_s=timeout_s, what=what):
        result = await check()
        if done(result):
            return result
    raise AssertionError("unreachable")
