"""Codebook versions: stored once, never modified (a trigger refuses it), health stats updatable."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from memory_store import codec
from memory_store.errors import CodebookConflict, InvalidRecord, UnknownCodebookVersion
from memory_store.models import codebook_versions
from memory_store.records import CodebookHealth, CodebookInfo, StoredCodebook
from memory_store.timeutil import now

_INFO_COLUMNS = [c for c in codebook_versions.c if c.name not in ("vectors",)]


def insert_version(
    conn: Connection,
    vectors: npt.ArrayLike,
    parent: int | None,
    health: CodebookHealth | None,
    dtype: str,
    expect_latest: bool = False,
    groups: int = 1,
) -> int:
    """Store a new codebook version of ``groups`` groups; return its number.

    With ``expect_latest`` the insert is a compare-and-set: it succeeds only if ``parent`` is the
    newest version (or, for ``parent=None``, if there is no version yet), else
    :class:`CodebookConflict`. Writers are serialised on the table for that check.
    """
    arr = np.asarray(vectors)
    if arr.ndim != 2 or not 2 <= arr.shape[0] <= codec.MAX_CODES or arr.shape[1] < 1:
        raise InvalidRecord(f"codebook must be (C, D) with 2 <= C <= {codec.MAX_CODES}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidRecord("codebook vectors must be finite (no NaN or inf)")
    try:
        codec.group_size(arr.shape[0], groups)
        blob = codec.encode_codebook(arr, dtype)
    except codec.CodecError as e:
        raise InvalidRecord(str(e)) from None
    if parent is not None:
        exists = conn.execute(
            sa.select(codebook_versions.c.version).where(codebook_versions.c.version == parent)
        ).first()
        if exists is None:
            raise UnknownCodebookVersion(f"parent codebook version {parent} does not exist")
    if expect_latest:
        _check_latest(conn, parent)
    h = health or CodebookHealth()
    ts = now()
    stmt = sa.insert(codebook_versions).values(
        parent_version=parent,
        num_codes=arr.shape[0],
        dim=arr.shape[1],
        groups=groups,
        dtype=dtype,
        vectors=blob,
        vectors_sha256=hashlib.sha256(blob).hexdigest(),
        created_at=ts,
        **_health_values(h),
        health_updated_at=ts if health is not None else None,
    )
    try:
        return int(conn.execute(stmt.returning(codebook_versions.c.version)).scalar_one())
    except sa.exc.IntegrityError as e:
        if "uq_codebook_versions_parent" in str(e.orig) or "parent_version" in str(e.orig):
            raise CodebookConflict(f"codebook version {parent} already has a child version") from None
        raise


def latest_version(conn: Connection) -> int | None:
    """The newest codebook version, or None in an empty store."""
    value = conn.execute(sa.select(sa.func.max(codebook_versions.c.version))).scalar()
    return None if value is None else int(value)


def _check_latest(conn: Connection, parent: int | None) -> None:
    if conn.dialect.name == "postgresql":
        # SQLite writers are already serialised (BEGIN IMMEDIATE); Postgres ones are here.
        conn.exec_driver_sql("LOCK TABLE codebook_versions IN SHARE ROW EXCLUSIVE MODE")
    latest = latest_version(conn)
    if latest != parent:
        raise CodebookConflict(f"expected codebook version {parent} to be the newest, but it is {latest}")


def _health_values(h: CodebookHealth) -> dict[str, Any]:
    return {"perplexity": h.perplexity, "resets": h.resets, "dead_codes": h.dead_codes, "health": h.extra}


def update_health(conn: Connection, version: int, health: CodebookHealth) -> None:
    """Replace the health stats of ``version`` (its vectors stay as they are)."""
    t = codebook_versions
    stmt = (
        sa.update(t).where(t.c.version == version).values(**_health_values(health), health_updated_at=now())
    )
    if conn.execute(stmt).rowcount != 1:
        raise UnknownCodebookVersion(f"codebook version {version} does not exist")


def _info(row: Any) -> CodebookInfo:
    return CodebookInfo(
        version=row.version,
        parent_version=row.parent_version,
        num_codes=row.num_codes,
        dim=row.dim,
        groups=row.groups,
        dtype=row.dtype,
        vectors_sha256=row.vectors_sha256,
        created_at=row.created_at,
        health=CodebookHealth(row.perplexity, row.resets, row.dead_codes, dict(row.health or {})),
    )


def info(conn: Connection, version: int) -> CodebookInfo:
    """A version without its vectors; :class:`UnknownCodebookVersion` if it is not stored."""
    row = conn.execute(sa.select(*_INFO_COLUMNS).where(codebook_versions.c.version == version)).first()
    if row is None:
        raise UnknownCodebookVersion(f"codebook version {version} does not exist")
    return _info(row)


def list_versions(conn: Connection) -> list[CodebookInfo]:
    """Every stored version, oldest first, without vectors."""
    rows = conn.execute(sa.select(*_INFO_COLUMNS).order_by(codebook_versions.c.version))
    return [_info(r) for r in rows]


def load(conn: Connection, version: int) -> StoredCodebook:
    """A version with its vectors; :class:`UnknownCodebookVersion` if it is not stored."""
    row = conn.execute(sa.select(codebook_versions).where(codebook_versions.c.version == version)).first()
    if row is None:
        raise UnknownCodebookVersion(f"codebook version {version} does not exist")
    return StoredCodebook(_info(row), codec.decode_codebook(bytes(row.vectors)))


def raw_vectors(conn: Connection, version: int) -> bytes:
    """The stored codebook blob (codec format 1) of ``version``."""
    t = codebook_versions
    blob = conn.execute(sa.select(t.c.vectors).where(t.c.version == version)).scalar_one_or_none()
    if blob is None:
        raise UnknownCodebookVersion(f"codebook version {version} does not exist")
    return bytes(blob)


def layouts(conn: Connection) -> dict[int, codec.CodeLayout]:
    """version -> its codes' layout (C, G), for every stored version."""
    t = codebook_versions.c
    rows = conn.execute(sa.select(t.version, t.num_codes, t.groups))
    return {v: codec.CodeLayout(c, g) for v, c, g in rows}
