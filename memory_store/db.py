"""Engines and transactions for both backends.

SQLite (the embedded default) runs in WAL mode with a busy timeout, foreign keys on and
``synchronous=NORMAL``: a crash can lose the last commits, never half of one, and since consumed
Kafka offsets live in the same transactions as the documents, a consumer resuming from
:meth:`MemoryStore.stored_offsets` re-reads exactly what was lost. Write transactions start with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing on a lock upgrade.

PostgreSQL runs at READ COMMITTED. Writers that touch the same count rows can deadlock; write
transactions are retried from the start on deadlock or serialization failure
(:func:`infra.retry.retry`: tenacity with jittered exponential backoff).

No driver exception leaves :func:`run_write` or :func:`read_transaction`: each is translated into
a store error (:mod:`memory_store.translate` says which are transient and which are the record's
fault).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from infra.logging import get_logger
from infra.retry import Backoff, retry
from infra.settings import mask_url
from memory_store.errors import DatabaseUnreachable, StoreBusy
from memory_store.translate import driver_error, is_conflict, translate

log = get_logger(__name__)
T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_ATTEMPTS = 8
WRITE_BACKOFF = Backoff(first_s=0.04, max_s=1.0)


def display_url(url: str) -> str:
    """The URL with its password masked."""
    return mask_url(url)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory SQLite."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str, pool_size: int = 5, *, must_exist: bool = False) -> Engine:
    """An engine configured for the store (see module docstring).

    ``must_exist``: the caller will not create the schema (it only reads, or needs a migrated
    store), so a SQLite file that does not exist is an error (:class:`DatabaseUnreachable`)
    instead of a new empty database and folder."""
    try:
        u = make_url(url)
    except sa.exc.ArgumentError:
        raise DatabaseUnreachable(
            f"{display_url(url)!r} is not a database URL (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB)"
        ) from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is not None and must_exist and not path.is_file():
            raise DatabaseUnreachable(
                f"no SQLite database at {path} (check --database-url or MBC_DATABASE__URL; "
                "`mbc store migrate` or `mbc learn` creates one)"
            )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(u, pool_size=pool_size, max_overflow=pool_size)
        else:
            engine = sa.create_engine(u, poolclass=sa.pool.StaticPool)
        _configure_sqlite(engine, wal=path is not None)
        return engine
    if backend == "postgresql":
        return sa.create_engine(u, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    raise DatabaseUnreachable(f"unsupported database backend {backend!r}; use sqlite or postgresql")


def _configure_sqlite(engine: Engine, wal: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_connection.cursor()
        if wal:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("store_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside a read transaction (one consistent snapshot on both backends)."""
    try:
        with _connect(engine) as conn, conn.begin():
            yield conn
    except Exception as e:
        _raise_translated(e)


def run_write(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run ``work(conn)`` in one write transaction; retry it whole on deadlock or lock timeout."""

    def once() -> T:
        with _connect(engine) as conn:
            conn.execution_options(store_write=True)
            with conn.begin():
                return work(conn)

    def conflicted(attempt: int, error: BaseException, _wait: float) -> None:
        log.info(
            "write conflicted with another writer, retrying",
            attempt=attempt,
            error=type(driver_error(error)).__name__,
        )

    try:
        return retry(
            once, attempts=WRITE_ATTEMPTS, retry_if=is_conflict, backoff=WRITE_BACKOFF, on_retry=conflicted
        )
    except Exception as e:
        if is_conflict(e):
            first = (str(driver_error(e)).strip().splitlines() or [""])[0]
            raise StoreBusy(f"write gave up after {WRITE_ATTEMPTS} attempts: {first}") from e
        _raise_translated(e)


def _raise_translated(error: Exception) -> NoReturn:
    """Raise the store error for ``error`` (``error`` itself when it is not the driver's)."""
    translated = translate(error)
    if translated is None or translated is error:
        raise error
    raise translated from error


@contextmanager
def _connect(engine: Engine) -> Iterator[Connection]:
    try:
        conn = engine.connect()
    except sa.exc.OperationalError as e:
        first = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise DatabaseUnreachable(f"cannot reach database {engine.url!r}: {first}") from None
    with conn:
        yield conn
