"""The one retry helper: jittered exponential backoff and a predicate for what is worth retrying.

    backoff = Backoff(first_s=0.05, max_s=1.0)
    rows = retry(lambda: write(conn), attempts=8, retry_if=is_deadlock, backoff=backoff)

- :class:`Backoff` is the schedule: attempt ``n`` (1-based) waits ``first_s * factor**(n-1)``,
  capped at ``max_s``, then scaled by a random factor in ``[1 - jitter, 1]`` — jitter only ever
  shortens a wait, so the cap holds, and concurrent clients that failed together spread out.
- :func:`retry` / :func:`retry_async` call a function until it returns, the predicate says an
  error is not worth retrying, or ``attempts`` are used up; the last error is raised unchanged.
- Callers that must not block (the learner's store step schedules its next try and returns to the
  consumer loop) use :meth:`Backoff.delay` alone.

Standard library only, so every package may import it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

RetryIf = Callable[[BaseException], bool]
OnRetry = Callable[[int, BaseException, float], None]  # (attempt that failed, its error, wait in s)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with downward jitter (see the module docstring)."""

    first_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.first_s < 0 or self.max_s < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid backoff {self}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(0, attempt - 1)
        base = self.first_s * self.factor ** min(exponent, 64)
        capped = min(base, self.max_s)
        u = (rng or random).random()
        return capped * (1.0 - self.jitter * u)


def retry(
    fn: Callable[[], T],
    *,
    attempts: int,
    retry_if: RetryIf,
    backoff: Backoff,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """``fn()``, called again after a backoff while it raises an error ``retry_if`` accepts."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:
            if attempt == attempts or not retry_if(e):
                raise
            wait = backoff.delay(attempt)
            if on_retry is not None:
                on_retry(attempt, e, wait)
            (sleep or time.sleep)(wait)
    raise AssertionError("unreachable")


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    retry_if: RetryIf,
    backoff: Backoff,
    on_retry: OnRetry | None = None,
) -> T:
    """The coroutine version of :func:`retry` (waits with ``asyncio.sleep``)."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except Exception as e:
            if attempt == attempts or not retry_if(e):
                raise
            wait = backoff.delay(attempt)
            if on_retry is not None:
                on_retry(attempt, e, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
