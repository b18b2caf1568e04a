"""Retry policy: how many attempts, and how long to wait between them.

Exponential backoff with jitter, so that many nodes failing together (a flaky service) do not
retry in lock-step. The upstream names (``max_attempts``, ``backoff_first``, ``backoff_base``,
``retry_on``) are kept.
"""

from __future__ import annotations

import random
from typing import Any

import attrs


@attrs.frozen
class RetryPolicy:
    max_attempts: int = 1
    backoff_first: float = 1.0
    backoff_base: float = 2.0
    backoff_max: float = 60.0
    # Fraction of each delay that is randomised: delay is drawn from [d * (1 - jitter), d].
    jitter: float = 0.5
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    # A node that hit its timeout_s is retried too, unless this is False.
    retry_timeouts: bool = True

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")
        if self.backoff_first < 0 or self.backoff_base < 1:
            raise ValueError("backoff_first must be >= 0 and backoff_base >= 1")

    @classmethod
    def from_retries(cls, retries: int | None, **kwargs: Any) -> "RetryPolicy":
        """``retries=N`` means N further attempts after the first one."""
        return cls(max_attempts=1 + max(0, retries or 0), **kwargs)

    def should_retry(self, attempt: int, exc: BaseException | None) -> bool:
        """May attempt number ``attempt`` (1-based), which raised ``exc``, be followed by another?

        ``exc`` is None for an attempt that timed out.
        """
        if attempt >= self.max_attempts:
            return False
        if exc is None:
            return self.retry_timeouts
        return isinstance(exc, self.retry_on)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number ``attempt`` failed."""
        base = min(self.backoff_max, self.backoff_first * self.backoff_base ** (attempt - 1))
        r = (rng or random).random()
        return base * (1.0 - self.jitter * r)


NO_RETRY = RetryPolicy()
