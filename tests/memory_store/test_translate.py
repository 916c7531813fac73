"""Driver errors become the store's own: transient, the record's fault, or a fault to surface."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from infra.retry import Backoff, retry
from memory_store.errors import DatabaseUnreachable, InvalidRecord, StoreBusy, StoreFault, StoreUnavailable
from memory_store.translate import translate


class _PgError(Exception):
    """Shaped like a psycopg error: a PEP 249 class name from the psycopg package, a SQLSTATE."""

    sqlstate: str | None = None


def pg(kind: str, sqlstate: str | None) -> BaseException:
    cls = type(kind, (_PgError,), {"sqlstate": sqlstate, "__module__": "psycopg.errors"})
    return sa.exc.DBAPIError("INSERT …", {}, cls("boom"))


@pytest.mark.parametrize(
    ("kind", "sqlstate", "expected"),
    [
        ("OperationalError", "40P01", StoreBusy),  # deadlock
        ("OperationalError", "40001", StoreBusy),  # serialization failure
        ("OperationalError", "57014", StoreBusy),  # statement timeout
        ("OperationalError", "55P03", StoreBusy),  # lock not available
        ("OperationalError", "57P01", DatabaseUnreachable),  # admin shutdown (restart)
        ("OperationalError", "08006", DatabaseUnreachable),  # connection failure
        ("OperationalError", "53100", DatabaseUnreachable),  # disk full
        ("InternalError", "25006", DatabaseUnreachable),  # read-only transaction
        ("ProgrammingError", "42501", DatabaseUnreachable),  # permission denied
        ("OperationalError", None, DatabaseUnreachable),  # connection lost, no SQLSTATE
        ("IntegrityError", "23505", InvalidRecord),
        ("IntegrityError", "23514", InvalidRecord),  # check constraint
        ("DataError", "22001", InvalidRecord),  # value too long
        ("DataError", None, InvalidRecord),  # NUL in text (psycopg, client side)
        ("ProgrammingError", "42P01", StoreFault),  # undefined table: schema does not match
    ],
)
def test_postgres_errors(kind: str, sqlstate: str | None, expected: type) -> None:
    error = translate(pg(kind, sqlstate))
    assert type(error) is expected
    assert isinstance(error, StoreUnavailable) == (expected in (StoreBusy, DatabaseUnreachable))


def test_sqlite_errors() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as integrity:
        conn.execute("INSERT INTO t VALUES (1)")
    assert type(translate(integrity.value)) is InvalidRecord
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    readonly.sqlite_errorcode = 8  # type: ignore[attr-defined]
    assert type(translate(readonly)) is DatabaseUnreachable
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5  # type: ignore[attr-defined]
    assert type(translate(sa.exc.OperationalError("x", {}, locked))) is StoreBusy
    assert (
        type(translate(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")))
        is InvalidRecord
    )
    assert translate(ValueError("not the database's")) is None


def test_the_learner_does_not_name_the_driver() -> None:
    """The store's boundary holds: the learner decides from store errors, not SQLAlchemy's."""
    from pathlib import Path

    learner = Path(__file__).resolve().parents[2] / "learner"
    offenders = [p for p in learner.rglob("*.py") if "sqlalchemy" in p.read_text()]
    assert offenders == []


def test_retry_helper() -> None:
    waits: list[float] = []
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("later")
        return "ok"

    backoff = Backoff(first_s=0.1, max_s=0.25, jitter=0.5)
    assert (
        retry(
            flaky,
            attempts=5,
            retry_if=lambda e: isinstance(e, TimeoutError),
            backoff=backoff,
            sleep=waits.append,
        )
        == "ok"
    )
    assert len(waits) == 2 and 0.05 <= waits[0] <= 0.1 and 0.1 <= waits[1] <= 0.2
    assert all(backoff.delay(n) <= 0.25 for n in range(1, 100))  # jitter never passes the cap
    with pytest.raises(KeyError):  # not retried
        retry(
            lambda: {}["x"],
            attempts=5,
            retry_if=lambda e: isinstance(e, TimeoutError),
            backoff=backoff,
            sleep=waits.append,
        )
    assert len(waits) == 2
    with pytest.raises(TimeoutError):  # attempts used up: the last error, unchanged
        retry(
            lambda: (_ for _ in ()).throw(TimeoutError("x")),
            attempts=3,
            retry_if=lambda e: True,
            backoff=backoff,
            sleep=waits.append,
        )
    assert len(waits) == 4
