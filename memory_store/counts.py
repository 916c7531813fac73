"""Exact counts per (codebook version, code) for any slice of the memory.

A slice is ``since <= published_at < until`` (either bound optional), optionally one source and
one codebook version. It is answered from three exact pieces:

* no time bound and no source: ``code_counts`` (one row per code);
* whole UTC days inside the slice: ``code_counts_daily`` summed over those days;
* the partial days at either edge: the documents in them, decoded and counted.

So the cost is O(days x sources x C) rows plus the documents of at most two partial days,
whatever the size of the memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from memory_store import codec
from memory_store.models import code_counts, code_counts_daily, documents
from memory_store.records import CodeCount
from memory_store.timeutil import DAY, EPOCH, day_start, utc


@dataclass(frozen=True, slots=True)
class Slice:
    """Which documents to count: ``since <= published_at < until``, one source, one version."""

    since: datetime | None = None
    until: datetime | None = None
    source_id: int | None = None
    version: int | None = None


def documents_where(
    q: sa.Select,  # type: ignore[type-arg]
    since: datetime | None,
    until: datetime | None,
    source_id: int | None,
    version: int | None,
) -> sa.Select:  # type: ignore[type-arg]
    """``q`` on the documents table narrowed to ``since <= published_at < until``, one source, one
    version (None: no bound): the one place a slice becomes SQL over stored documents."""
    d = documents.c
    if since is not None:
        q = q.where(d.published_at >= utc(since))
    if until is not None:
        q = q.where(d.published_at < utc(until))
    if source_id is not None:
        q = q.where(d.source_id == source_id)
    if version is not None:
        q = q.where(d.codebook_version == version)
    return q


def full_days(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """Epoch days [lo, hi) lying wholly inside [since, until); None means unbounded."""
    lo = None if since is None else -((EPOCH - utc(since)) // DAY)  # ceil
    hi = None if until is None else (utc(until) - EPOCH) // DAY  # floor
    return lo, hi


def slice_counts(conn: Connection, s: Slice, layouts: Mapping[int, codec.CodeLayout]) -> list[CodeCount]:
    """Exact counts for slice ``s``, sorted by (version, code), zero counts left out."""
    total: Counter[tuple[int, int]] = Counter()
    if s.since is None and s.until is None and s.source_id is None:
        total.update(_from_totals(conn, s.version))
    else:
        lo, hi = full_days(s.since, s.until)
        if lo is not None and hi is not None and lo >= hi:  # no whole day inside
            total.update(_from_documents(conn, s, s.since, s.until, layouts))
        else:
            total.update(_from_daily(conn, s, lo, hi))
            if s.since is not None and lo is not None and utc(s.since) < day_start(lo):
                total.update(_from_documents(conn, s, s.since, day_start(lo), layouts))
            if s.until is not None and hi is not None and day_start(hi) < utc(s.until):
                total.update(_from_documents(conn, s, day_start(hi), s.until, layouts))
    return [CodeCount(v, c, n) for (v, c), n in sorted(total.items()) if n > 0]


def _from_totals(conn: Connection, version: int | None) -> dict[tuple[int, int], int]:
    t = code_counts.c
    q = sa.select(t.codebook_version, t.code, t.n).where(t.n > 0)
    if version is not None:
        q = q.where(t.codebook_version == version)
    return {(v, c): n for v, c, n in conn.execute(q)}


def _from_daily(conn: Connection, s: Slice, lo: int | None, hi: int | None) -> dict[tuple[int, int], int]:
    t = code_counts_daily.c
    q = sa.select(t.codebook_version, t.code, sa.func.sum(t.n)).group_by(t.codebook_version, t.code)
    if lo is not None:
        q = q.where(t.day >= lo)
    if hi is not None:
        q = q.where(t.day < hi)
    if s.source_id is not None:
        q = q.where(t.source_id == s.source_id)
    if s.version is not None:
        q = q.where(t.codebook_version == s.version)
    return {(v, c): int(n) for v, c, n in conn.execute(q)}


def _from_documents(
    conn: Connection,
    s: Slice,
    start: datetime | None,
    end: datetime | None,
    layouts: Mapping[int, codec.CodeLayout],
) -> Counter[tuple[int, int]]:
    d = documents.c
    q = documents_where(
        sa.select(d.codebook_version, d.k, d.code_format, d.codes), start, end, s.source_id, s.version
    )
    batches: dict[tuple[int, int, int], list[bytes]] = {}
    for version, k, fmt, blob in conn.execute(q):
        batches.setdefault((version, k, fmt), []).append(bytes(blob))
    out: Counter[tuple[int, int]] = Counter()
    for (version, k, fmt), blobs in batches.items():
        codes = codec.unpack_stored(blobs, k, layouts[version], fmt).ravel()
        values, n = np.unique(codes, return_counts=True)
        out.update({(version, int(c)): int(m) for c, m in zip(values, n, strict=True)})
    return out


def slice_codes(
    conn: Connection, s: Slice, layouts: Mapping[int, codec.CodeLayout]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Every stored code of the slice's documents: (N, K) indices and (N,) versions, by document id.

    The naive counterpart of :func:`slice_counts` (O(documents)); documents of another K than the
    first are not mixed in (a store holds one K per model).
    """
    d = documents.c
    q = sa.select(d.codebook_version, d.k, d.code_format, d.codes).order_by(d.id)
    q = documents_where(q, s.since, s.until, s.source_id, s.version)
    rows = [(int(v), int(k), int(f), bytes(b)) for v, k, f, b in conn.execute(q)]
    if not rows:
        return np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
    k = rows[0][1]
    codes = np.stack([codec.unpack_stored([b], k, layouts[v], f)[0] for v, kk, f, b in rows if kk == k])
    versions = np.array([v for v, kk, _, _ in rows if kk == k], dtype=np.int64)
    return codes, versions
