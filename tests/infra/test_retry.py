"""infra.retry on tenacity: the hook's arguments, the async path, and what is never retried.

(tests/memory_store/test_translate.py::test_retry_helper covers the schedule and the limits.)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from infra.retry import Backoff, retry, retry_async


def failing(times: int, error: BaseException) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "ok"

    return calls, fn


def test_on_retry_is_told_the_failed_attempt_its_error_and_the_wait() -> None:
    error = TimeoutError("later")
    calls, fn = failing(2, error)
    seen: list[tuple[int, BaseException, float]] = []
    waits: list[float] = []
    backoff = Backoff(first_s=0.1, max_s=1.0, jitter=0.0)  # no jitter: exact waits
    result = retry(
        fn,
        attempts=4,
        retry_if=lambda e: True,
        backoff=backoff,
        on_retry=lambda n, e, w: seen.append((n, e, w)),
        sleep=waits.append,
    )
    assert result == "ok" and len(calls) == 3
    assert seen == [(1, error, 0.1), (2, error, 0.2)]
    assert waits == [0.1, 0.2]


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        retry(lambda: 1, attempts=0, retry_if=lambda e: True, backoff=Backoff())


def test_base_exceptions_are_never_retried_even_if_the_predicate_would() -> None:
    calls, fn = failing(5, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        retry(fn, attempts=5, retry_if=lambda e: True, backoff=Backoff(0, 0), sleep=lambda s: None)
    assert len(calls) == 1


def test_the_backoff_is_a_tenacity_wait_with_the_same_schedule() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0, factor=2.0, jitter=0.2)
    capped = [min(0.5 * 2 ** (n - 1), 3.0) for n in range(1, 10)]
    random.seed(7)
    delays = [backoff.delay(n) for n in range(1, 10)]
    random.seed(7)
    waits = [backoff(SimpleNamespace(attempt_number=n)) for n in range(1, 10)]  # type: ignore[arg-type]
    assert waits == delays
    assert all(0.8 * c <= d <= c for c, d in zip(capped, delays, strict=True))


def test_retry_async() -> None:
    async def main() -> tuple[str, list[int]]:
        calls: list[int] = []
        seen: list[int] = []

        async def fn() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError("down")
            return "up"

        result = await retry_async(
            fn,
            attempts=3,
            retry_if=lambda e: isinstance(e, ConnectionError),
            backoff=Backoff(first_s=0.001, max_s=0.001),
            on_retry=lambda n, e, w: seen.append(n),
        )
        return result, seen

    assert asyncio.run(main()) == ("up", [1, 2])

    async def cancelled() -> int:
        calls: list[int] = []

        async def fn() -> None:
            calls.append(1)
            raise asyncio.CancelledError()

        with pytest.raises(asyncio.CancelledError):
            await retry_async(fn, attempts=5, retry_if=lambda e: True, backoff=Backoff(0, 0))
        return len(calls)

    assert asyncio.run(cancelled()) == 1  # a cancelled poll stops, it is not retried

    async def exhausted() -> None:
        async def fn() -> None:
            raise ConnectionError("still down")

        await retry_async(fn, attempts=2, retry_if=lambda e: True, backoff=Backoff(0, 0))

    with pytest.raises(ConnectionError, match="still down"):  # the last error, not tenacity's RetryError
        asyncio.run(exhausted())
