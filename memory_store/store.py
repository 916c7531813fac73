"""``MemoryStore``: the one interface the learner, ``mbc ask`` and the reader service use.

    store = MemoryStore("postgresql+psycopg://…/mbc")       # or "sqlite:///mbc-data/memory.db"
    v = store.add_codebook_version(vectors)                   # (C, D) float array -> version
    store.write_batch(docs, offsets)                          # one transaction, idempotent by id
    store.stored_offsets("learner", "docs.clean")             # {partition: next offset} to resume
    store.counts(since=…, until=…, source="reuters")          # exact [(version, code, count)]

Both backends run the same code; the differences live in :mod:`memory_store.db`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from memory_store import codebooks, doc_index, writes
from memory_store import counts as counts_
from memory_store.codec import CodeLayout, unpack_stored
from memory_store.db import make_engine, read_transaction, run_write
from memory_store.errors import DatabaseUnreachable, InvalidRecord, UnknownCodebookVersion
from memory_store.index import CodebookIndex, IndexCache, default_index_dir
from memory_store.migrate import current_revision, ensure_current, upgrade
from memory_store.models import codebook_versions, consumed_offsets, documents, sources
from memory_store.records import (
    CodebookHealth,
    CodebookInfo,
    CodeCount,
    ConsumedOffset,
    DocumentRecord,
    RetrievedDocument,
    SourcePosition,
    StoredCodebook,
    StoredDocument,
    StoreStats,
    WriteResult,
)
from memory_store.retrieve import QueryFn, retrieve, slice_of
from memory_store.sketch_index import SketchIndex
from memory_store.text_sketch import TextSketch
from memory_store.timeutil import epoch_day, utc

if TYPE_CHECKING:
    from memory_store.protocol import Store


class MemoryStore:
    """The compressed memory in a database (SQLite or PostgreSQL), plus FAISS indexes of codebooks."""

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = False,
        index_dir: Path | None = None,
        pool_size: int = 5,
        read_only: bool = False,
        key_device: str | None = None,
    ) -> None:
        """``auto_migrate``: create or upgrade the schema (else a store that needs it is an error,
        and a missing SQLite file is not created); ``read_only``: never create or migrate;
        ``key_device``: a torch device the document keys are also searched on (a GPU reader's)."""
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, must_exist=read_only or not auto_migrate)
        try:
            if auto_migrate and not read_only:
                upgrade(self.engine)
            ensure_current(self.engine)
        except sa.exc.OperationalError as e:
            self.engine.dispose()
            first = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
            raise DatabaseUnreachable(f"cannot reach database {self.engine.url!r}: {first}") from None
        except BaseException:
            self.engine.dispose()
            raise
        self._source_ids: dict[str, int] = {}
        self._layouts: dict[int, CodeLayout] = {}
        self.indexes = IndexCache(index_dir or default_index_dir(url), self.codebook_info, self.get_codebook)
        self.documents_index = doc_index.DocumentIndex(
            self.engine,
            lambda v: self.get_codebook(v).vectors,
            lambda: self._sizes(None),
            key_device=key_device,
        )
        self.sketch_index = SketchIndex(self.engine, TextSketch(), key_device=key_device)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Release every database connection."""
        self.engine.dispose()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writes --------------------------------------------------------------------------------

    def write_batch(
        self, docs: Sequence[DocumentRecord], offsets: Sequence[ConsumedOffset] = ()
    ) -> WriteResult:
        """Store ``docs`` and ``offsets`` in one transaction. Ids already stored are left unchanged
        (their counts too); so are repeats inside the batch (first occurrence wins)."""
        batch = writes.prepare(docs, self._sizes({d.codebook_version for d in docs}))

        def work(conn: sa.Connection) -> tuple[WriteResult, dict[str, int]]:
            sids = writes.source_ids(conn, {d.source for d in batch.records}, self._source_ids)
            inserted = writes.insert_documents(conn, batch, sids)
            new = [(d, c) for d, c in zip(batch.records, batch.indices, strict=True) if d.id in inserted]
            daily, total = writes.count_deltas(
                [d.codebook_version for d, _ in new],
                [sids[d.source] for d, _ in new],
                [epoch_day(d.published_at) for d, _ in new],
                [c for _, c in new],
            )
            writes.add_counts(conn, daily, total)
            doc_index.log_changes(conn, (d.id for d, _ in new), doc_index.ADD)
            stored = writes.store_offsets(conn, offsets)
            dups = tuple(d.id for d in batch.records if d.id not in inserted) + batch.repeated
            return WriteResult(tuple(d.id for d, _ in new), dups, stored), sids

        result, sids = run_write(self.engine, work)
        self._source_ids.update(sids)  # only ids that are committed
        return result

    def delete_document(self, doc_id: str) -> bool:
        """Delete one document and its codes from the counts; False if it was not stored."""
        return bool(self.delete_documents([doc_id]))

    def delete_documents(self, ids: Sequence[str]) -> list[str]:
        """Delete documents (one transaction); return the ids that were stored and are now gone."""
        layouts = self._sizes(None)

        def work(conn: sa.Connection) -> list[str]:
            gone = writes.delete_documents(conn, ids, layouts)
            doc_index.log_changes(conn, gone, doc_index.DELETE)
            return gone

        return run_write(self.engine, work)

    # -- offsets ---------------------------------------------------------------------------------

    def stored_offsets(self, group: str, topic: str) -> dict[int, int]:
        """partition -> next offset to consume, as committed with the documents."""
        t = consumed_offsets.c
        q = sa.select(t.partition, t.next_offset).where(t.consumer_group == group, t.topic == topic)
        with read_transaction(self.engine) as conn:
            return {int(p): int(o) for p, o in conn.execute(q)}

    # -- counts ----------------------------------------------------------------------------------

    def counts(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        version: int | None = None,
    ) -> list[CodeCount]:
        """Exact stored codes per (version, code) over documents with ``since <= published_at <
        until`` (bounds optional, naive = UTC), of ``source`` and ``version`` if given."""
        if since is not None and until is not None and utc(since) > utc(until):
            raise InvalidRecord("since must not be after until")
        with read_transaction(self.engine) as conn:
            s = slice_of(conn, since, until, source, version)
            return [] if s is None else counts_.slice_counts(conn, s, self._sizes(None, conn))

    def slice_codes(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        version: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Every stored code in the slice of :meth:`counts`: (N, K) indices and (N,) versions.

        O(documents): what a naive (uncollapsed) aggregation needs, and a way to check counts."""
        with read_transaction(self.engine) as conn:
            s = slice_of(conn, since, until, source, version)
            if s is None:
                return np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
            return counts_.slice_codes(conn, s, self._sizes(None, conn))

    # -- codebooks -------------------------------------------------------------------------------

    def add_codebook_version(
        self,
        vectors: npt.ArrayLike,
        parent: int | None = None,
        health: CodebookHealth | None = None,
        dtype: str = "float32",
        expect_latest: bool = False,
        groups: int = 1,
    ) -> int:
        """Store a (C, D) codebook as a new, immutable version; return its number. ``groups``: G, the
        product-quantization groups of C / G codes its documents' codes fall in (code format 2).

        ``expect_latest=True`` makes it a compare-and-set for concurrent publishers: it raises
        :class:`CodebookConflict` unless ``parent`` is the newest version (None: the store has none).
        """
        return run_write(
            self.engine,
            lambda c: codebooks.insert_version(c, vectors, parent, health, dtype, expect_latest, groups),
        )

    def latest_codebook_version(self) -> int | None:
        """The newest codebook version (the head of the linear history), or None."""
        with read_transaction(self.engine) as conn:
            return codebooks.latest_version(conn)

    def get_codebook(self, version: int) -> StoredCodebook:
        """A version with its vectors."""
        with read_transaction(self.engine) as conn:
            return codebooks.load(conn, version)

    def codebook_blob(self, version: int) -> bytes:
        """A version's vectors exactly as stored (codec codebook format 1)."""
        with read_transaction(self.engine) as conn:
            return codebooks.raw_vectors(conn, version)

    def codebook_info(self, version: int) -> CodebookInfo:
        """A version without its vectors."""
        with read_transaction(self.engine) as conn:
            return codebooks.info(conn, version)

    def codebook_versions(self) -> list[CodebookInfo]:
        """Every version, oldest first."""
        with read_transaction(self.engine) as conn:
            return codebooks.list_versions(conn)

    def update_codebook_health(self, version: int, health: CodebookHealth) -> None:
        """Replace a version's health stats (perplexity, resets, dead codes, extra)."""
        run_write(self.engine, lambda conn: codebooks.update_health(conn, version, health))

    def code_index(self, version: int) -> CodebookIndex:
        """The FAISS index of a version (loaded, verified, or rebuilt from the database)."""
        return self.indexes.get(version)

    # -- retrieval -------------------------------------------------------------------------------

    def use_key_book(
        self, key_book: Callable[[int, npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None
    ) -> None:
        """Document keys from ``key_book(v, stored vectors)`` instead of the stored vectors (a reader's
        learned keys); see :meth:`DocumentIndex.use_key_book`."""
        self.documents_index.use_key_book(key_book)

    def retrieve(
        self,
        query: QueryFn,
        k: int,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
    ) -> list[RetrievedDocument]:
        """The ``k`` stored documents of the slice whose keys score highest against ``query(v, book)``
        (the query vector (d,) for codebook version v, whose stored vectors are ``book`` (G·C, d));
        best first, confirmed against the database (:mod:`memory_store.retrieve`)."""
        return self._retrieve(self.documents_index, query, k, since, until, source)

    def retrieve_by_text(
        self,
        question: str,
        k: int,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
    ) -> list[RetrievedDocument]:
        """The ``k`` stored documents of the slice whose text sketches score highest against the
        words of ``question`` (:mod:`memory_store.text_sketch`); documents without a sketch are never
        found this way. Best first, confirmed against the database like :meth:`retrieve`."""
        index = self.sketch_index
        return self._retrieve(index, lambda _v, _book: index.query(question), k, since, until, source)

    def _retrieve(
        self,
        index: doc_index.DocumentIndex,
        query: QueryFn,
        k: int,
        since: datetime | None,
        until: datetime | None,
        source: str | None,
    ) -> list[RetrievedDocument]:
        if k < 1:
            raise InvalidRecord(f"k must be at least 1, got {k}")
        s: counts_.Slice | None = counts_.Slice(since, until)
        if source is not None:  # no database round trip on a question's path without one
            with read_transaction(self.engine) as conn:
                s = slice_of(conn, since, until, source)
        return [] if s is None else retrieve(self.engine, index, query, k, s, lambda: self._sizes(None))

    # -- reads -----------------------------------------------------------------------------------

    def document(self, doc_id: str) -> StoredDocument | None:
        """A stored document with its codes, or None."""
        d = documents.c
        q = (
            sa.select(
                documents,
                sources.c.name.label("source"),
                codebook_versions.c.num_codes,
                codebook_versions.c.groups,
            )
            .join(sources, sources.c.id == d.source_id)
            .join(codebook_versions, codebook_versions.c.version == d.codebook_version)
            .where(d.id == doc_id)
        )
        with read_transaction(self.engine) as conn:
            r = conn.execute(q).first()
        if r is None:
            return None
        position = None
        if r.source_topic is not None:
            position = SourcePosition(r.source_topic, r.source_partition, r.source_offset)
        return StoredDocument(
            id=r.id,
            source=r.source,
            url=r.url,
            title=r.title,
            published_at=r.published_at,
            ingested_at=r.ingested_at,
            content_sha256=r.content_sha256,
            k=r.k,
            codebook_version=r.codebook_version,
            code_format=r.code_format,
            codes=bytes(r.codes),
            indices=tuple(int(i) for i in self._decode(r)),
            position=position,
        )

    def stats(self) -> StoreStats:
        """Size of the memory now (one consistent snapshot)."""
        d, c = documents.c, codebook_versions.c
        sizes = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.func.length(d.codes)), 0),
            sa.func.coalesce(sa.func.sum(sa.cast(d.k, sa.BigInteger) * c.dim * 4), 0),
            sa.func.min(d.ingested_at),
            sa.func.max(d.ingested_at),
        ).join_from(documents, codebook_versions, c.version == d.codebook_version)
        with read_transaction(self.engine) as conn:
            n, code_bytes, float_bytes, first, last = conn.execute(sizes).one()
            n_sources = conn.execute(sa.select(sa.func.count()).select_from(sources)).scalar_one()
            n_versions = conn.execute(sa.select(sa.func.count()).select_from(codebook_versions)).scalar_one()
        return StoreStats(
            backend=self.backend,
            schema_revision=current_revision(self.engine),
            documents=int(n),
            sources=int(n_sources),
            codebook_versions=int(n_versions),
            code_bytes=int(code_bytes),
            float_equivalent_bytes=int(float_bytes),
            first_ingested_at=first,
            last_ingested_at=last,
        )

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _decode(r: sa.Row[Any]) -> npt.NDArray[np.int64]:
        """A document row (with its version's num_codes and groups) -> its K indices."""
        layout = CodeLayout(r.num_codes, r.groups)
        return unpack_stored([bytes(r.codes)], r.k, layout, r.code_format)[0]

    def _sizes(self, versions: set[int] | None, conn: sa.Connection | None = None) -> dict[int, CodeLayout]:
        """version -> (C, G) for ``versions`` (None: all), from the cache (versions never change)."""
        if versions is None or not versions <= self._layouts.keys():
            if conn is not None:
                self._layouts.update(codebooks.layouts(conn))
            else:
                with read_transaction(self.engine) as c:
                    self._layouts.update(codebooks.layouts(c))
        if versions is not None and (missing := versions - self._layouts.keys()):
            raise UnknownCodebookVersion(f"codebook version(s) {sorted(missing)} do not exist")
        return self._layouts


if TYPE_CHECKING:
    _satisfies_protocol: type[Store] = MemoryStore  # mypy checks MemoryStore against the Store protocol
