"""Each document's text sketch: the key a reader retrieves it by from a question's words.

Revision ID: 0006_text_sketch
Revises: 0005_document_log
Create Date: 2026-12-04

``documents.text_sketch`` holds :class:`memory_store.text_sketch.TextSketch`'s float16 sketch of the
document's text (H·2 bytes; H = 1,024 by default), written by the learner with the codes; the text
itself is not kept. Documents written before this revision (or by a learner with sketches off) have
none and are not found by text retrieval; they keep every other use.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_text_sketch"
down_revision: str | None = "0005_document_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("text_sketch", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Not a batch (copy-and-move) operation on SQLite: the views of migration 0002 read `documents`,
    # and SQLite (3.35+) drops a plain column in place.
    if op.get_context().dialect.name == "postgresql":
        op.drop_column("documents", "text_sketch")
    else:
        op.execute("ALTER TABLE documents DROP COLUMN text_sketch")
