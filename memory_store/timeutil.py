"""UTC helpers: every timestamp the store handles is UTC; slices are cut on UTC days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime; naive values are taken as UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def epoch_day(ts: datetime) -> int:
    """Days since 1970-01-01 of the UTC day ``ts`` falls in (exact integer arithmetic)."""
    return (utc(ts) - EPOCH) // DAY


def day_start(day: int) -> datetime:
    """Start (00:00 UTC) of epoch day ``day``."""
    return EPOCH + day * DAY


def now() -> datetime:
    """The current time in UTC, microsecond precision."""
    return datetime.now(UTC)
