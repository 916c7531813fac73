"""Top-k documents for a query, within a slice, read back from the database (the truth).

:meth:`MemoryStore.retrieve` is this: the document-key index (:mod:`memory_store.doc_index`)
proposes candidates by inner product; the ``documents`` table confirms them — still stored, inside
``since <= published_at < until`` and of ``source`` — and gives their codes and what a citation
names. Deleted documents thus never come back, whatever the index still holds. When the slice's
bounds or deletions reject candidates the index is asked for more (x8 each round, twice); a slice
that is still short then searches only the slice's own documents (their ids read from the database:
O(documents in the slice)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from memory_store import codec
from memory_store.counts import Slice, documents_where
from memory_store.db import read_transaction
from memory_store.doc_index import DocumentIndex, Hit
from memory_store.models import documents, sources
from memory_store.records import RetrievedDocument

QueryFn = Callable[[int, npt.NDArray[np.float32]], npt.ArrayLike]
_ROUNDS = 2  # over-fetching rounds before searching within the slice's ids


def slice_of(
    conn: Connection,
    since: datetime | None,
    until: datetime | None,
    source: str | None,
    version: int | None = None,
) -> Slice | None:
    """The slice of documents published in [since, until) from ``source`` (and of codebook
    ``version``, if given); None: no source of that name, so an empty slice."""
    source_id = None
    if source is not None:
        source_id = conn.execute(sa.select(sources.c.id).where(sources.c.name == source)).scalar()
        if source_id is None:
            return None
    return Slice(since, until, source_id, version)


def retrieve(
    engine: Engine,
    index: DocumentIndex,
    query: QueryFn,
    k: int,
    s: Slice,
    layouts: Callable[[], Mapping[int, codec.CodeLayout]],
) -> list[RetrievedDocument]:
    """The ``k`` best-scoring stored documents of slice ``s`` (fewer if it holds fewer), best first."""
    index.refresh()
    fetch = k + 8
    for _ in range(_ROUNDS + 1):
        hits = index.search(query, fetch)
        found = _confirm(engine, hits, s, layouts())
        if len(found) >= k or len(hits) < fetch:
            return found[:k]
        fetch *= 8
    with read_transaction(engine) as conn:
        allowed = {str(i) for (i,) in conn.execute(_where(sa.select(documents.c.id), s))}
    return _confirm(engine, index.search(query, k, allowed), s, layouts())[:k]


def _where(q: sa.Select, s: Slice) -> sa.Select:  # type: ignore[type-arg]
    """The slice's time window and source; the version is the index's own (one index per version)."""
    return documents_where(q, s.since, s.until, s.source_id, None)


def _confirm(
    engine: Engine, hits: list[Hit], s: Slice, layouts: Mapping[int, codec.CodeLayout]
) -> list[RetrievedDocument]:
    """``hits`` that are stored and in the slice, in their order, with their metadata and codes."""
    score = {h.doc_id: h.score for h in hits}
    rows: dict[str, RetrievedDocument] = {}
    with read_transaction(engine) as conn:
        for i in range(0, len(hits), 500):
            for r in _fetch(conn, [h.doc_id for h in hits[i : i + 500]], s):
                rows[r.id] = RetrievedDocument(
                    id=r.id,
                    source=r.source,
                    url=r.url,
                    title=r.title,
                    published_at=r.published_at,
                    codebook_version=int(r.codebook_version),
                    indices=tuple(
                        int(c)
                        for c in codec.unpack_stored(
                            [bytes(r.codes)], r.k, layouts[r.codebook_version], r.code_format
                        )[0]
                    ),
                    score=score[r.id],
                )
    return [rows[h.doc_id] for h in hits if h.doc_id in rows]


def _fetch(conn: Connection, ids: list[str], s: Slice) -> list[sa.Row]:  # type: ignore[type-arg]
    d = documents.c
    q = (
        sa.select(d.id, sources.c.name.label("source"), d.url, d.title, d.published_at)
        .add_columns(d.codebook_version, d.k, d.code_format, d.codes)
        .join(sources, sources.c.id == d.source_id)
        .where(d.id.in_(ids))
    )
    return list(conn.execute(_where(q, s)).all())
