"""The write path: documents, their codes, exact counts and consumed offsets in one transaction.

Order inside :func:`write_batch` (all in one transaction; a failure anywhere leaves nothing):
1. make sure every source has a row (ids are cached only after commit, by the caller);
2. ``INSERT .. ON CONFLICT (id) DO NOTHING RETURNING id`` for the documents — the ids returned are
   the rows this transaction really inserted; concurrent writers of the same id wait for each other
   and exactly one gets the id back;
3. add the codes of exactly those rows to ``code_counts`` and ``code_counts_daily`` (keys sorted, so
   concurrent writers lock count rows in the same order);
4. store the consumed offsets (never moving an offset backwards).
Deletion is the mirror image: ``DELETE .. RETURNING`` then subtract the codes of the rows removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from memory_store import bulk, codec
from memory_store.errors import InvalidRecord
from memory_store.models import code_counts, code_counts_daily, consumed_offsets, documents, sources
from memory_store.records import ConsumedOffset, DocumentRecord
from memory_store.timeutil import epoch_day, now, utc
from pipeline import contract

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A validated batch: unique records (first occurrence wins) and their decoded codes."""

    records: tuple[DocumentRecord, ...]
    indices: tuple[npt.NDArray[np.int64], ...]  # one (K,) array per record
    repeated: tuple[str, ...]  # ids that appeared more than once in the batch


def prepare(docs: Sequence[DocumentRecord], layouts: Mapping[int, codec.CodeLayout]) -> PreparedWrite:
    """Validate ``docs`` against the codec and their codebook versions' layouts (version -> C, G);
    decode codes."""
    seen: dict[str, int] = {}
    unique: list[DocumentRecord] = []
    repeated: list[str] = []
    for doc in docs:
        if doc.id in seen:
            repeated.append(doc.id)
            continue
        _check(doc, layouts)
        seen[doc.id] = len(unique)
        unique.append(doc)
    decoded: list[npt.NDArray[np.int64] | None] = [None] * len(unique)
    batches: dict[tuple[int, int, int], list[int]] = {}
    for i, doc in enumerate(unique):
        batches.setdefault((doc.codebook_version, doc.k, doc.code_format), []).append(i)
    for (version, k, fmt), members in batches.items():
        try:
            codes = codec.unpack_stored([unique[i].codes for i in members], k, layouts[version], fmt)
        except codec.CodecError as e:
            raise InvalidRecord(f"codes of codebook version {version}: {e}") from None
        for row, i in zip(codes, members, strict=True):
            decoded[i] = row
    return PreparedWrite(tuple(unique), tuple(d for d in decoded if d is not None), tuple(repeated))


def _check(doc: DocumentRecord, layouts: Mapping[int, codec.CodeLayout]) -> None:
    """The document contract (the stage checks the same limits) plus what the codec needs."""
    where = f"document {doc.id!r}"
    for problem in (
        contract.id_problem(doc.id),
        contract.source_problem(doc.source),
        contract.url_problem(doc.url),
        contract.text_problem("title", doc.title),
    ):
        if problem is not None:
            raise InvalidRecord(f"{where}: {problem}", doc.id)
    if not _SHA256.match(doc.content_sha256):
        raise InvalidRecord(f"{where}: content_sha256 must be 64 lowercase hex digits", doc.id)
    if doc.code_format not in codec.CODE_FORMATS:
        raise InvalidRecord(
            f"{where}: code format {doc.code_format} unsupported (this build stores {codec.CODE_FORMATS})",
            doc.id,
        )
    if not 1 <= doc.k <= 32767:
        raise InvalidRecord(f"{where}: K must be in [1, 32767], got {doc.k}", doc.id)
    c, g = layouts[doc.codebook_version]
    try:
        size = codec.packed_size(doc.k, c, groups=g, code_format=doc.code_format)
    except codec.CodecError as e:
        raise InvalidRecord(f"{where}: {e}", doc.id) from None
    if len(doc.codes) != size:
        raise InvalidRecord(f"{where}: {len(doc.codes)} code bytes, expected {size} for K={doc.k}", doc.id)
    if doc.text_sketch is not None and (not doc.text_sketch or len(doc.text_sketch) % 2):
        raise InvalidRecord(
            f"{where}: a text sketch is float16 numbers, got {len(doc.text_sketch)} bytes", doc.id
        )
    if not isinstance(doc.published_at, datetime):
        raise InvalidRecord(f"{where}: published_at must be a datetime", doc.id)
    pos = doc.position
    if pos is not None and (not 1 <= len(pos.topic) <= 255 or pos.partition < 0 or pos.offset < 0):
        raise InvalidRecord(
            f"{where}: source position {pos} is not a topic, partition >= 0, offset >= 0", doc.id
        )


def insert_for(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT construct (both have ON CONFLICT)."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def source_ids(conn: Connection, names: Iterable[str], known: Mapping[str, int]) -> dict[str, int]:
    """Ids of ``names``, creating rows for new sources (``known``: a cache of committed ids)."""
    wanted = set(names)
    found = {n: known[n] for n in wanted if n in known}
    missing = sorted(wanted - found.keys())
    if missing:
        stmt = insert_for(conn, sources).on_conflict_do_nothing(index_elements=["name"])
        conn.execute(stmt, [{"name": n, "created_at": now()} for n in missing])
        rows = conn.execute(sa.select(sources.c.name, sources.c.id).where(sources.c.name.in_(missing)))
        found.update({name: int(sid) for name, sid in rows})
    return found


def insert_documents(conn: Connection, batch: PreparedWrite, sids: Mapping[str, int]) -> set[str]:
    """Insert the batch's documents; return the ids this transaction actually inserted."""
    if not batch.records:
        return set()
    ingested = now()
    rows = [
        {
            "id": d.id,
            "source_id": sids[d.source],
            "url": d.url,
            "title": d.title,
            "published_at": utc(d.published_at),
            "ingested_at": utc(d.ingested_at) if d.ingested_at is not None else ingested,
            "content_sha256": d.content_sha256,
            "k": d.k,
            "codebook_version": d.codebook_version,
            "code_format": d.code_format,
            "codes": d.codes,
            "text_sketch": d.text_sketch,
            "source_topic": d.position.topic if d.position else None,
            "source_partition": d.position.partition if d.position else None,
            "source_offset": d.position.offset if d.position else None,
        }
        for d in sorted(batch.records, key=lambda r: r.id)  # id order: writers lock ids in one order
    ]
    if conn.dialect.name == "postgresql":
        return bulk.copy_documents(conn, rows)
    stmt = insert_for(conn, documents).on_conflict_do_nothing(index_elements=["id"])
    result = conn.execute(stmt.returning(documents.c.id), rows)
    return {row[0] for row in result}


def count_deltas(
    versions: Sequence[int],
    source_ids_: Sequence[int],
    days: Sequence[int],
    codes: Sequence[npt.NDArray[np.int64]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per-document codes -> sorted unique (day, source, version, code, n) rows and (version, code, n) rows."""
    if not codes:
        empty = np.zeros((0, 5), dtype=np.int64)
        return empty, np.zeros((0, 3), dtype=np.int64)
    ks = np.array([len(c) for c in codes])
    keys = np.stack(
        [
            np.repeat(np.asarray(days, dtype=np.int64), ks),
            np.repeat(np.asarray(source_ids_, dtype=np.int64), ks),
            np.repeat(np.asarray(versions, dtype=np.int64), ks),
            np.concatenate(codes).astype(np.int64),
        ],
        axis=1,
    )  # (sum K, 4)
    return codec.count_rows(keys), codec.count_rows(keys[:, 2:])


def add_counts(conn: Connection, daily: npt.NDArray[np.int64], total: npt.NDArray[np.int64]) -> None:
    """Add count rows (from :func:`count_deltas`), creating missing ones."""
    for table, cols, rows in (
        (code_counts, ("codebook_version", "code", "n"), total),
        (code_counts_daily, ("day", "source_id", "codebook_version", "code", "n"), daily),
    ):
        if len(rows) == 0:
            continue
        if conn.dialect.name == "postgresql":
            bulk.add_counts(conn, table.name, cols, rows)
            continue
        stmt = insert_for(conn, table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(cols[:-1]), set_={"n": table.c.n + stmt.excluded.n}
        )
        conn.execute(stmt, [dict(zip(cols, r, strict=True)) for r in rows.tolist()])


def subtract_counts(conn: Connection, daily: npt.NDArray[np.int64], total: npt.NDArray[np.int64]) -> None:
    """Subtract count rows; the rows exist because the codes being removed were counted."""
    for table, cols, rows in (
        (code_counts, ("codebook_version", "code"), total),
        (code_counts_daily, ("day", "source_id", "codebook_version", "code"), daily),
    ):
        if len(rows) == 0:
            continue
        if conn.dialect.name == "postgresql":
            bulk.subtract_counts(conn, table.name, (*cols, "n"), rows)
            continue
        where = sa.and_(*(table.c[c] == sa.bindparam(f"k_{c}") for c in cols))
        stmt = sa.update(table).where(where).values(n=table.c.n - sa.bindparam("d"))
        conn.execute(
            stmt,
            [{**{f"k_{c}": v for c, v in zip(cols, r, strict=False)}, "d": r[-1]} for r in rows.tolist()],
        )


def store_offsets(conn: Connection, offsets: Sequence[ConsumedOffset]) -> int:
    """Upsert consumed offsets; an offset never moves backwards. Returns how many were given."""
    latest: dict[tuple[str, str, int], int] = {}
    for o in offsets:
        if o.next_offset < 0 or o.partition < 0 or not o.group or not o.topic:
            raise InvalidRecord(f"invalid consumed offset {o}")
        key = (o.group, o.topic, o.partition)
        latest[key] = max(latest.get(key, 0), o.next_offset)
    if not latest:
        return 0
    stmt = insert_for(conn, consumed_offsets)
    bigger = sa.func.greatest if conn.dialect.name == "postgresql" else sa.func.max
    stmt = stmt.on_conflict_do_update(
        index_elements=["consumer_group", "topic", "partition"],
        set_={
            "next_offset": bigger(consumed_offsets.c.next_offset, stmt.excluded.next_offset),
            "updated_at": stmt.excluded.updated_at,
        },
    )
    ts = now()
    rows = [
        {"consumer_group": g, "topic": t, "partition": p, "next_offset": n, "updated_at": ts}
        for (g, t, p), n in sorted(latest.items())
    ]
    conn.execute(stmt, rows)
    return len(rows)


def delete_documents(
    conn: Connection, ids: Sequence[str], layouts: Mapping[int, codec.CodeLayout]
) -> list[str]:
    """Delete documents by id and subtract their codes from the counts; return the ids deleted."""
    if not ids:
        return []
    d = documents.c
    stmt = sa.delete(documents).where(d.id.in_(sorted(set(ids))))
    rows = conn.execute(
        stmt.returning(d.id, d.source_id, d.published_at, d.k, d.codebook_version, d.code_format, d.codes)
    ).all()
    codes = [
        codec.unpack_stored([bytes(r.codes)], r.k, layouts[r.codebook_version], r.code_format)[0]
        for r in rows
    ]
    daily, total = count_deltas(
        [r.codebook_version for r in rows],
        [r.source_id for r in rows],
        [epoch_day(r.published_at) for r in rows],
        codes,
    )
    subtract_counts(conn, daily, total)
    return [r.id for r in rows]
