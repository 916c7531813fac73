"""PostgreSQL fast paths for the write path: COPY for documents, one ``unnest`` statement per
count table. SQLite runs the plain executemany versions in :mod:`memory_store.writes`; both give
the same rows (the whole test suite runs on both).

Documents are copied into a temporary table that is dropped at commit (no session state, so this
also works behind a transaction-pooling proxy), then moved with
``INSERT .. SELECT .. ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id`` — the ids returned are
exactly the rows this transaction inserted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

_STAGING = "incoming_documents"


def copy_documents(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """COPY ``rows`` (column -> value, values in UTC) into ``documents``; return ids inserted."""
    cols = list(rows[0])
    names = ", ".join(cols)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"CREATE TEMP TABLE {_STAGING} (LIKE documents) ON COMMIT DROP")
        with cursor.copy(f"COPY {_STAGING} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in cols])
        cursor.execute(
            f"INSERT INTO documents ({names}) SELECT {names} FROM {_STAGING} ORDER BY id "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        inserted = {r[0] for r in cursor.fetchall()}
        cursor.execute(f"DROP TABLE {_STAGING}")  # a second write in this transaction makes a new one
        return inserted
    finally:
        cursor.close()


def _arrays(cols: Sequence[str], rows: npt.NDArray[np.int64]) -> tuple[str, dict[str, list[int]]]:
    casts = ", ".join(f"CAST(:a{i} AS {'bigint' if c == 'n' else 'integer'}[])" for i, c in enumerate(cols))
    return f"unnest({casts})", {f"a{i}": rows[:, i].tolist() for i in range(len(cols))}


def add_counts(conn: Connection, table: str, cols: Sequence[str], rows: npt.NDArray[np.int64]) -> None:
    """Upsert-add (key..., n) rows, in the order given (sorted: lock order is the same for all)."""
    source, params = _arrays(cols, rows)
    keys = ", ".join(cols[:-1])
    conn.execute(
        sa.text(
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM {source} "
            f"ON CONFLICT ({keys}) DO UPDATE SET n = {table}.n + EXCLUDED.n"
        ),
        params,
    )


def subtract_counts(conn: Connection, table: str, cols: Sequence[str], rows: npt.NDArray[np.int64]) -> None:
    """Subtract (key..., n) rows from existing count rows."""
    source, params = _arrays(cols, rows)
    match = " AND ".join(f"t.{c} = d.{c}" for c in cols[:-1])
    conn.execute(
        sa.text(f"UPDATE {table} AS t SET n = t.n - d.n FROM {source} AS d({', '.join(cols)}) WHERE {match}"),
        params,
    )
