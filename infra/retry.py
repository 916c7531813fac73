"""Retries through tenacity: the project's backoff schedule and one call shape for what to retry.

    backoff = Backoff(first_s=0.05, max_s=1.0)
    rows = retry(lambda: write(conn), attempts=8, retry_if=is_deadlock, backoff=backoff)

- :class:`Backoff` is the schedule: attempt ``n`` (1-based) waits ``first_s * factor**(n-1)``,
  capped at ``max_s``, then scaled by a random factor in ``[1 - jitter, 1]`` — jitter only ever
  shortens a wait, so the cap holds, and concurrent clients that failed together spread out. It is
  a tenacity wait strategy (``wait=backoff``). tenacity's own jittered waits do not keep the cap
  this way: ``wait_random_exponential`` draws from ``[0, cap]`` (a wait can be ~0) and
  ``wait_exponential_jitter`` adds jitter on top of the exponential, so the cap is the only
  thing that holds it down.
- :func:`retry` / :func:`retry_async` run ``fn`` under ``tenacity.Retrying`` /
  ``AsyncRetrying`` until it returns, the predicate says an error is not worth retrying, or
  ``attempts`` are used up; the last error is raised unchanged (``reraise=True``). Only
  ``Exception`` is ever retried: tenacity catches ``BaseException``, so ``KeyboardInterrupt``,
  ``SystemExit`` and ``asyncio.CancelledError`` are let through before the predicate is asked.
- Callers that must not block (the learner's store step schedules its next try and returns to the
  consumer loop) use :meth:`Backoff.delay` alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypedDict, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt

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

    def __call__(self, retry_state: RetryCallState) -> float:
        """The tenacity wait strategy: the delay after the attempt that just failed."""
        return self.delay(retry_state.attempt_number)


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
    retrying = Retrying(sleep=sleep or time.sleep, **_policy(attempts, retry_if, backoff, on_retry))
    return retrying(fn)


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    retry_if: RetryIf,
    backoff: Backoff,
    on_retry: OnRetry | None = None,
) -> T:
    """The coroutine version of :func:`retry` (tenacity waits with ``asyncio.sleep``)."""
    retrying = AsyncRetrying(**_policy(attempts, retry_if, backoff, on_retry))
    return await retrying(fn)


class _Policy(TypedDict):
    """What :func:`retry` and :func:`retry_async` tell tenacity, sync and async alike."""

    stop: stop_after_attempt
    retry: retry_if_exception
    wait: Backoff
    before_sleep: Callable[[RetryCallState], None] | None
    reraise: bool


def _policy(attempts: int, retry_if: RetryIf, backoff: Backoff, on_retry: OnRetry | None) -> _Policy:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    return _Policy(
        stop=stop_after_attempt(attempts),
        # tenacity catches BaseException: ask retry_if about Exception only
        retry=retry_if_exception(lambda e: isinstance(e, Exception) and retry_if(e)),
        wait=backoff,
        before_sleep=_before_sleep(on_retry),
        reraise=True,  # the last error itself, not tenacity's RetryError
    )


def _before_sleep(on_retry: OnRetry | None) -> Callable[[RetryCallState], None] | None:
    """``on_retry`` as tenacity's ``before_sleep`` hook: told the failed attempt, its error, the wait."""
    if on_retry is None:
        return None

    def before_sleep(state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        error = state.outcome.exception()
        assert error is not None  # only failed attempts are retried
        on_retry(state.attempt_number, error, state.next_action.sleep)

    return before_sleep
