"""One timer for all polling waits.

``trio.sleep`` ends through a cancel scope and a ``Cancelled`` exception; with ten thousand
pollers each sleeping several times that machinery dominates a submit-and-poll workload.
Instead every poller parks itself here (``wait_task_rescheduled``) and a single task, whose own
cancel-scope deadline tracks the earliest sleeper, wakes every sleeper that is due in one pass.
Deadlines are rounded up to the millisecond and sleepers due in the same millisecond share one
heap entry (a bucket), so the heap holds distinct milliseconds, not sleepers.

Time is ``trio.current_time()``, so ``autojump_clock`` and ``MockClock`` drive it in tests.
"""

from __future__ import annotations

import heapq
import math

import trio
from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled


# Wake-ups are batched per millisecond: a sleep may end up to 1 ms late, never early.
RESOLUTION_INV = 1000
_ceil = math.ceil


class Timer:
    def __init__(self) -> None:
        self._heap: list[float] = []
        # deadline -> list of parked tasks (None once a sleeper was cancelled)
        self._buckets: dict[float, list] = {}
        self._scope: trio.CancelScope | None = None
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve sleepers until cancelled. Started with ``nursery.start``."""
        self._running = True
        task_status.started()
        try:
            while True:
                with trio.CancelScope(deadline=self._heap[0] if self._heap else math.inf) as scope:
                    self._scope = scope
                    await trio.sleep_forever()
                self._scope = None
                self._wake_due(trio.current_time())
        finally:
            self._running = False
            self._scope = None
            # Nobody will wake the remaining sleepers; hand them back to trio so they see the
            # cancellation that is tearing the runtime down instead of hanging.
            for bucket in self._buckets.values():
                for i, task in enumerate(bucket):
                    if task is not None:
                        bucket[i] = None
                        reschedule(task)
            self._buckets.clear()
            self._heap.clear()

    def _wake_due(self, now: float) -> None:
        heap = self._heap
        buckets = self._buckets
        while heap and heap[0] <= now:
            deadline = heapq.heappop(heap)
            for task in buckets.pop(deadline):
                if task is not None:
                    reschedule(task)

    async def sleep_until(self, deadline: float) -> None:
        if not self._running:
            await trio.sleep_until(deadline)
        elif deadline <= trio.current_time():
            await trio.lowlevel.checkpoint()
        else:
            await wait_task_rescheduled(self.park(deadline))

    def park(self, deadline: float):
        """Register the current task to be woken at ``deadline``; return the abort function
        to hand to ``wait_task_rescheduled`` (which the caller must await next)."""
        # Round up to the timer's resolution, so that sleepers due within the same
        # millisecond share one bucket and one heap entry.
        deadline = _ceil(deadline * RESOLUTION_INV) / RESOLUTION_INV
        bucket = self._buckets.get(deadline)
        if bucket is None:
            bucket = self._buckets[deadline] = []
            heapq.heappush(self._heap, deadline)
            scope = self._scope
            if scope is not None and deadline < scope.deadline:
                scope.deadline = deadline
        index = len(bucket)
        bucket.append(current_task())

        def abort(_raise_cancel) -> Abort:
            # Leave a hole instead of searching the heap; the timer skips it.
            bucket[index] = None
            return Abort.SUCCEEDED

        return abort

    async def sleep(self, seconds: float) -> None:
        if seconds < 0 or math.isnan(seconds):
            raise ValueError(f"sleep length must be >= 0, got {seconds!r}")
        await self.sleep_until(trio.current_time() + seconds)
