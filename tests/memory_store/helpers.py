"""Building documents for the store tests and recounting codes the slow, obvious way."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from memory_store.codec import CODE_FORMAT_VERSION, CodeLayout, pack_codes, unpack_stored
from memory_store.records import DocumentRecord, SourcePosition
from memory_store.store import MemoryStore

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def doc(
    doc_id: str,
    codes: Sequence[int],
    version: int,
    num_codes: int = 512,
    source: str = "reuters",
    published_at: datetime = T0,
    ingested_at: datetime | None = None,
    position: SourcePosition | None = None,
    groups: int = 1,
    code_format: int = CODE_FORMAT_VERSION,
) -> DocumentRecord:
    """A document whose K codes are ``codes`` (of a version of ``num_codes`` codes in ``groups`` groups)."""
    return DocumentRecord(
        id=doc_id,
        source=source,
        published_at=published_at,
        content_sha256=hashlib.sha256(doc_id.encode()).hexdigest(),
        k=len(codes),
        codebook_version=version,
        codes=pack_codes(list(codes), num_codes, groups=groups, code_format=code_format),
        code_format=code_format,
        url=f"https://example.org/{doc_id}",
        title=f"title of {doc_id}",
        position=position,
        ingested_at=ingested_at,
    )


def random_docs(
    n: int,
    version: int,
    seed: int = 0,
    k: int = 12,
    num_codes: int = 512,
    prefix: str = "d",
    hours: int = 72,
    groups: int = 1,
    code_format: int = CODE_FORMAT_VERSION,
) -> list[DocumentRecord]:
    """``n`` documents with random codes, three sources, published over ``hours`` hours; with
    ``groups`` G, slot j's code is one of group j mod G (K a multiple of G)."""
    rng = np.random.default_rng(seed)
    c_group = num_codes // groups
    codes = rng.integers(0, c_group, size=(n, k)) + (np.arange(k) % groups) * c_group  # (n, K)
    minutes = rng.integers(0, hours * 60, size=n)
    return [
        doc(
            f"{prefix}{i}",
            codes[i].tolist(),
            version,
            num_codes,
            source=f"src{i % 3}",
            published_at=T0 + timedelta(minutes=int(minutes[i])),
            groups=groups,
            code_format=code_format,
        )
        for i in range(n)
    ]


def codebook(num_codes: int = 512, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(num_codes, dim)).astype(np.float32)


def recount(
    store: MemoryStore,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
) -> dict[tuple[int, int], int]:
    """Counts per (version, code) by decoding every stored document that matches."""
    layouts = {i.version: CodeLayout(i.num_codes, i.groups) for i in store.codebook_versions()}
    q = sa.text(
        "SELECT d.codebook_version, d.k, d.code_format, d.codes, d.published_at, s.name "
        "FROM documents d JOIN sources s ON s.id = d.source_id"
    )
    out: Counter[tuple[int, int]] = Counter()
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    for version, k, fmt, blob, published, name in rows:
        ts = published if isinstance(published, datetime) else datetime.fromisoformat(published)
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        if (since is not None and ts < since) or (until is not None and ts >= until):
            continue
        if source is not None and name != source:
            continue
        for code in unpack_stored([bytes(blob)], k, layouts[version], fmt)[0]:
            out[(version, int(code))] += 1
    return dict(out)


def as_dict(rows: Sequence[tuple[int, int, int]]) -> dict[tuple[int, int], int]:
    return {(v, c): n for v, c, n in rows}


def table_count(store: MemoryStore, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
