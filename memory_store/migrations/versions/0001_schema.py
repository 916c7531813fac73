"""Tables of the memory store, and triggers that keep stored meaning immutable.

Revision ID: 0001_schema
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_schema"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)

# A codebook version's vectors and lineage never change (docs/DESIGN.md §3b); health stats may.
_CODEBOOK_FROZEN = ("version", "parent_version", "num_codes", "dim", "dtype", "vectors", "vectors_sha256")
# What the exact counts depend on: a document's codes, its day and its source.
_DOCUMENT_FROZEN = ("id", "source_id", "published_at", "k", "codebook_version", "code_format", "codes")


def _changed(columns: Sequence[str], dialect: str) -> str:
    op_ = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    return " OR ".join(f"NEW.{c} {op_} OLD.{c}" for c in columns)


def _create_freeze_trigger(table: str, columns: Sequence[str], message: str) -> None:
    dialect = op.get_context().dialect.name
    name = f"{table}_frozen"
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF {_changed(columns, dialect)} THEN
                RAISE EXCEPTION '{message}' USING ERRCODE = 'check_violation';
              END IF;
              RETURN NEW;
            END $$
            """
        )
        op.execute(f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
    else:
        op.execute(
            f"""
            CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW
            WHEN {_changed(columns, dialect)}
            BEGIN SELECT RAISE(ABORT, '{message}'); END
            """
        )


def _drop_freeze_trigger(table: str) -> None:
    name = f"{table}_frozen"
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "codebook_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "parent_version",
            sa.Integer,
            sa.ForeignKey("codebook_versions.version", ondelete="RESTRICT"),
            nullable=True,
        ),
        sa.Column("num_codes", sa.Integer, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("vectors", sa.LargeBinary, nullable=False),
        sa.Column("vectors_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("perplexity", sa.Float, nullable=True),
        sa.Column("resets", sa.Integer, nullable=True),
        sa.Column("dead_codes", sa.Integer, nullable=True),
        sa.Column("health", sa.JSON, nullable=True),
        sa.Column("health_updated_at", TS, nullable=True),
        sa.CheckConstraint("num_codes BETWEEN 2 AND 65536", name="ck_codebook_num_codes"),
        sa.CheckConstraint("dim >= 1", name="ck_codebook_dim"),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.String(256), primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("published_at", TS, nullable=False),
        sa.Column("ingested_at", TS, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("k", sa.SmallInteger, nullable=False),
        sa.Column(
            "codebook_version",
            sa.Integer,
            sa.ForeignKey("codebook_versions.version", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("code_format", sa.SmallInteger, nullable=False),
        sa.Column("codes", sa.LargeBinary, nullable=False),
        sa.Column("source_topic", sa.String(255), nullable=True),
        sa.Column("source_partition", sa.Integer, nullable=True),
        sa.Column("source_offset", sa.BigInteger, nullable=True),
        sa.CheckConstraint("k >= 1", name="ck_documents_k"),
    )
    op.create_index("ix_documents_published_at", "documents", ["published_at"])
    op.create_table(
        "code_counts",
        sa.Column("codebook_version", sa.Integer, primary_key=True),
        sa.Column("code", sa.Integer, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.CheckConstraint("n >= 0", name="ck_code_counts_n"),
    )
    op.create_table(
        "code_counts_daily",
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, primary_key=True),
        sa.Column("codebook_version", sa.Integer, primary_key=True),
        sa.Column("code", sa.Integer, primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.CheckConstraint("n >= 0", name="ck_code_counts_daily_n"),
    )
    op.create_table(
        "consumed_offsets",
        sa.Column("consumer_group", sa.String(255), primary_key=True),
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("next_offset >= 0", name="ck_consumed_offsets_next"),
    )
    _create_freeze_trigger(
        "codebook_versions", _CODEBOOK_FROZEN, "codebook versions are immutable: add a new version instead"
    )
    _create_freeze_trigger(
        "documents", _DOCUMENT_FROZEN, "stored codes are immutable: delete the document and write it again"
    )


def downgrade() -> None:
    _drop_freeze_trigger("documents")
    _drop_freeze_trigger("codebook_versions")
    op.drop_table("consumed_offsets")
    op.drop_table("code_counts_daily")
    op.drop_table("code_counts")
    op.drop_index("ix_documents_published_at", table_name="documents")
    op.drop_table("documents")
    op.drop_table("codebook_versions")
    op.drop_table("sources")
