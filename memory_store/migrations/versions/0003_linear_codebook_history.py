"""A codebook version has at most one child: the online history stays linear (docs/DESIGN.md §3b).

Revision ID: 0003_linear_codebook_history
Revises: 0002_views
Create Date: 2026-11-26

Several learner workers may publish versions concurrently; each publishes a child of the version
it believes is the newest (:meth:`MemoryStore.add_codebook_version` with ``expect_latest``). This
unique index makes a second child of the same parent impossible even if a caller skips that check.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_linear_codebook_history"
down_revision: str | None = "0002_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("uq_codebook_versions_parent", "codebook_versions", ["parent_version"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_codebook_versions_parent", table_name="codebook_versions")
