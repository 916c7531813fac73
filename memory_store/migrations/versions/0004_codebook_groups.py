"""A codebook version knows its product-quantization groups G: what code format 2 packs by.

Revision ID: 0004_codebook_groups
Revises: 0003_linear_codebook_history
Create Date: 2026-12-03

Code format 2 (:mod:`memory_store.codec`) writes each code as its offset within its group, so a
document's blob means something only with the G of its codebook version. ``groups`` is that G
(``num_codes`` = G·C_g, C_g >= 2). Versions stored before this revision get G = 1, which is right
for them: their documents are format 1 (global indices), which G does not change, and a G = 1
version packs as before in format 2 too. Like the vectors, G is immutable: the freeze trigger of
``codebook_versions`` is recreated to cover it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_codebook_groups"
down_revision: str | None = "0003_linear_codebook_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECK = "ck_codebook_groups"
_CHECK_SQL = "groups >= 1 AND num_codes % groups = 0 AND num_codes >= 2 * groups"
_FROZEN_BEFORE = ("version", "parent_version", "num_codes", "dim", "dtype", "vectors", "vectors_sha256")
_MESSAGE = "codebook versions are immutable: add a new version instead"


def _freeze(columns: Sequence[str]) -> None:
    """(Re)create the freeze trigger of codebook_versions over ``columns`` (as in 0001_schema)."""
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in columns)
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION codebook_versions_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF {changed} THEN
                RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'check_violation';
              END IF;
              RETURN NEW;
            END $$
            """
        )  # the trigger itself calls the function by name and stays
    else:
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns)
        op.execute("DROP TRIGGER IF EXISTS codebook_versions_frozen")
        op.execute(
            f"""
            CREATE TRIGGER codebook_versions_frozen BEFORE UPDATE ON codebook_versions FOR EACH ROW
            WHEN {changed}
            BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END
            """
        )


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.add_column(
            "codebook_versions", sa.Column("groups", sa.Integer, nullable=False, server_default="1")
        )
        op.create_check_constraint(_CHECK, "codebook_versions", _CHECK_SQL)
    else:  # a plain ALTER (no batch copy of the table, which its views and triggers refer to)
        op.execute(
            "ALTER TABLE codebook_versions ADD COLUMN groups INTEGER NOT NULL DEFAULT 1 "
            f"CONSTRAINT {_CHECK} CHECK ({_CHECK_SQL})"
        )
    _freeze((*_FROZEN_BEFORE, "groups"))


def downgrade() -> None:
    _freeze(_FROZEN_BEFORE)  # the trigger must not name the column any more (SQLite refuses the drop)
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(_CHECK, "codebook_versions", type_="check")
        op.drop_column("codebook_versions", "groups")
    else:
        op.execute("ALTER TABLE codebook_versions DROP COLUMN groups")
