"""SQLAlchemy models of the memory store. The Alembic migrations in ``migrations/`` create them.

One row per document holds its metadata and its packed codes (format in :mod:`memory_store.codec`),
naming the codebook version that produced them. Counts per (codebook version, code) are kept exact
in two derived tables, updated in the same transaction as every insert and delete:

* ``code_counts`` — the whole memory, one row per (version, code): O(C) to read.
* ``code_counts_daily`` — the same split by UTC day of ``published_at`` and by source, so a slice of
  whole days or of one source is a small GROUP BY; partial edge days are recounted from documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored in UTC: ``timestamptz`` on Postgres, ISO text (naive, UTC) on SQLite.

    Naive datetimes handed in are taken as UTC; values read back are always timezone-aware UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base; its ``metadata`` is the migrations' target."""


class Source(Base):
    """A document source (feed, dataset replay); documents and daily counts refer to it by id."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class CodebookVersion(Base):
    """A codebook (C vectors of size D in G groups of C/G, the groups code format 2 packs by). Its
    vectors and G never change once stored (a trigger refuses it); the row cannot be deleted while
    documents or child versions refer to it (foreign keys)."""

    __tablename__ = "codebook_versions"
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    parent_version: Mapped[int | None] = mapped_column(
        sa.ForeignKey("codebook_versions.version", ondelete="RESTRICT"), nullable=True
    )
    num_codes: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    dim: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    groups: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="1")
    dtype: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    vectors: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)  # codec.encode_codebook
    vectors_sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    perplexity: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    resets: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    dead_codes: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    health: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    health_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (
        sa.CheckConstraint("num_codes BETWEEN 2 AND 65536", name="ck_codebook_num_codes"),
        sa.CheckConstraint("dim >= 1", name="ck_codebook_dim"),
        sa.CheckConstraint(
            "groups >= 1 AND num_codes % groups = 0 AND num_codes >= 2 * groups", name="ck_codebook_groups"
        ),
        sa.Index("uq_codebook_versions_parent", "parent_version", unique=True),  # linear history
    )


class DocumentRow(Base):
    """One stored document: metadata, where it came from, and its K packed codes."""

    __tablename__ = "documents"
    id: Mapped[str] = mapped_column(sa.String(256), primary_key=True)
    source_id: Mapped[int] = mapped_column(sa.ForeignKey("sources.id", ondelete="RESTRICT"), nullable=False)
    url: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    title: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    content_sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    k: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    codebook_version: Mapped[int] = mapped_column(
        sa.ForeignKey("codebook_versions.version", ondelete="RESTRICT"), nullable=False
    )
    code_format: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    codes: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)  # codec.pack_codes, code_format
    # TextSketch of the text, float16 (H·2 bytes); None: written without one (migration 0006)
    text_sketch: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    source_topic: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    source_partition: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    source_offset: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    __table_args__ = (
        sa.Index("ix_documents_published_at", "published_at"),
        sa.CheckConstraint("k >= 1", name="ck_documents_k"),
    )


class CodeCount(Base):
    """Stored codes per (codebook version, code) over the whole memory."""

    __tablename__ = "code_counts"
    codebook_version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    code: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    n: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    __table_args__ = (sa.CheckConstraint("n >= 0", name="ck_code_counts_n"),)


class DailyCodeCount(Base):
    """Stored codes per (UTC day of published_at as days since 1970-01-01, source, version, code)."""

    __tablename__ = "code_counts_daily"
    day: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    codebook_version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    code: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    n: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    __table_args__ = (sa.CheckConstraint("n >= 0", name="ck_code_counts_daily_n"),)


class ConsumedOffsetRow(Base):
    """The next Kafka offset to consume per (group, topic, partition), committed with the documents."""

    __tablename__ = "consumed_offsets"
    consumer_group: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    __table_args__ = (sa.CheckConstraint("next_offset >= 0", name="ck_consumed_offsets_next"),)


class DocumentLogRow(Base):
    """One document inserted (op 1) or deleted (op 2), in the transaction that did it: what a reader's
    document-key index (:mod:`memory_store.doc_index`) replays to follow writers in other processes."""

    __tablename__ = "document_log"
    seq: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    doc_id: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    op: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False)
    __table_args__ = (sa.CheckConstraint("op IN (1, 2)", name="ck_document_log_op"),)


documents = cast(sa.Table, DocumentRow.__table__)
sources = cast(sa.Table, Source.__table__)
codebook_versions = cast(sa.Table, CodebookVersion.__table__)
code_counts = cast(sa.Table, CodeCount.__table__)
code_counts_daily = cast(sa.Table, DailyCodeCount.__table__)
consumed_offsets = cast(sa.Table, ConsumedOffsetRow.__table__)
document_log = cast(sa.Table, DocumentLogRow.__table__)
