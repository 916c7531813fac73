"""A log of document writes and deletions, so every reader's document-key index can follow the store.

Revision ID: 0005_document_log
Revises: 0004_codebook_groups
Create Date: 2026-12-03

The FAISS index of document keys (:mod:`memory_store.doc_index`) lives in each reader process and
is rebuilt from ``documents`` on start. Writers in other processes (``mbc learn``, ``mbc store
delete``) append one row per inserted or deleted document here, in the same transaction as the
change; a reader applies the rows after the sequence number it has seen. Existing documents need no
rows: a reader's first build reads the documents table itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_document_log"
down_revision: str | None = "0004_codebook_groups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document_log",
        # Integer on SQLite (an INTEGER PRIMARY KEY is the rowid: monotonic), BIGINT on Postgres.
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("doc_id", sa.String(256), nullable=False),
        sa.Column("op", sa.SmallInteger(), nullable=False),
        sa.CheckConstraint("op IN (1, 2)", name="ck_document_log_op"),
    )


def downgrade() -> None:
    op.drop_table("document_log")
