"""The driver's exceptions (psycopg 3, sqlite3, as raised or wrapped by SQLAlchemy) as store errors.

Which failures are *transient* (:class:`StoreUnavailable`: nothing was written, the same call may
succeed later) and which are the *record's* fault (:class:`InvalidRecord`), by PostgreSQL SQLSTATE
or SQLite result code:

============================  ===============================================  =====================
kind                          PostgreSQL                                       SQLite
============================  ===============================================  =====================
StoreBusy                     40001 serialization failure, 40P01 deadlock,     SQLITE_BUSY, _LOCKED
                              55P03 lock not available, 57014 statement
                              timeout / cancelled
DatabaseUnreachable           class 08 (connection), 53 (disk full, out of     _READONLY, _PERM,
                              memory, too many connections), 57 (shutting      _IOERR, _FULL,
                              down, starting up), 58 (I/O), 25006 read-only    _CANTOPEN, _NOMEM,
                              transaction, 42501 permission denied; a lost     _PROTOCOL
                              connection (no SQLSTATE)
InvalidRecord                 class 22 (data: NUL in text, value too long,     _CONSTRAINT, _TOOBIG,
                              out of range), 23 (integrity: constraints,       _MISMATCH, _RANGE;
                              foreign keys); a value no encoder can write      an unencodable value
StoreFault                    anything else (e.g. 42P01 undefined table: the   anything else
                              schema does not match this build)
============================  ===============================================  =====================

Read-only and permission errors count as transient on purpose: they concern the database, not the
record (a failover in progress, a revoked grant), so the learner waits — visibly, with its
partitions paused — instead of dead-lettering every document, and resumes once writes work again.
A statement timeout is transient too: it is load, not content (documents are small and bounded by
the contract); if it keeps happening the learner keeps retrying and says so in its logs.
"""

from __future__ import annotations

import sqlalchemy as sa

from memory_store.errors import DatabaseUnreachable, InvalidRecord, StoreBusy, StoreError, StoreFault

CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})  # worth retrying the transaction at once
_BUSY_SQLSTATES = frozenset({"40P01", "40001", "55P03", "57014"})
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58"})
_UNAVAILABLE_SQLSTATES = frozenset({"25006", "42501"})
_INVALID_CLASSES = frozenset({"22", "23"})

# SQLite primary result codes (https://www.sqlite.org/rescode.html)
_SQLITE_BUSY = frozenset({5, 6})  # BUSY, LOCKED
_SQLITE_UNAVAILABLE = frozenset({3, 7, 8, 10, 13, 14, 15})  # PERM NOMEM READONLY IOERR FULL CANTOPEN PROTOCOL
_SQLITE_INVALID = frozenset({18, 19, 20, 25})  # TOOBIG CONSTRAINT MISMATCH RANGE

_PEP249 = (
    "IntegrityError",
    "DataError",
    "OperationalError",
    "InterfaceError",
    "ProgrammingError",
    "InternalError",
    "NotSupportedError",
    "DatabaseError",
    "Error",
)


def driver_error(error: BaseException) -> BaseException:
    """The DB-API exception inside a SQLAlchemy wrapper (or ``error`` itself)."""
    if isinstance(error, sa.exc.StatementError) and error.orig is not None:
        return error.orig
    return error


def is_conflict(error: BaseException) -> bool:
    """A deadlock, serialization failure or SQLite lock: retrying the transaction at once may work."""
    orig = driver_error(error)
    if getattr(orig, "sqlstate", None) in CONFLICT_SQLSTATES:
        return True
    return "database is locked" in str(orig)


def translate(error: BaseException) -> StoreError | None:
    """``error`` as a store error, or None when it does not come from the database driver."""
    if isinstance(error, StoreError):
        return error
    orig = driver_error(error)
    first = (str(orig).strip().splitlines() or [""])[0][:300]
    message = f"{type(orig).__name__}: {first}" if first else type(orig).__name__
    if isinstance(orig, UnicodeError):
        return InvalidRecord(f"a value cannot be encoded for the database: {message}")
    kind = _pep249_kind(orig)
    if kind is None:
        return None
    if getattr(error, "connection_invalidated", False):
        return DatabaseUnreachable(f"connection to the database lost: {message}")
    return _classify(orig, kind)(message)


def _classify(orig: BaseException, kind: str) -> type[StoreError]:
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        if sqlstate in _BUSY_SQLSTATES:
            return StoreBusy
        if sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES:
            return DatabaseUnreachable
        if sqlstate[:2] in _INVALID_CLASSES:
            return InvalidRecord
        return StoreFault
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary in _SQLITE_BUSY:
            return StoreBusy
        if primary in _SQLITE_UNAVAILABLE:
            return DatabaseUnreachable
        if primary in _SQLITE_INVALID:
            return InvalidRecord
        return StoreFault
    if kind in ("IntegrityError", "DataError"):
        return InvalidRecord
    if kind in ("OperationalError", "InterfaceError"):  # no code: the connection itself failed
        return DatabaseUnreachable
    return StoreFault


def _pep249_kind(error: BaseException) -> str | None:
    """The most specific DB-API (PEP 249) class name of ``error``'s driver exception, if any."""
    for cls in type(error).__mro__:
        if cls.__module__ == "builtins":
            return None
        if cls.__name__ in _PEP249 and cls.__module__.split(".")[0] in ("psycopg", "sqlite3", "psycopg2"):
            return cls.__name__
    return None
