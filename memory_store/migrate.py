"""Schema migrations (Alembic) run from Python: the CLI, the store and the tests use these.

Migrations live in ``memory_store/migrations/`` (shipped as package data). The revision is kept in
``store_alembic_version`` so other packages may keep their own Alembic history in the same database.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from memory_store.db import display_url, run_write
from memory_store.errors import MigrationNeeded

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "store_alembic_version"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic config pointing at our migrations; ``connection`` is used by ``env.py`` if given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this build knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` in one transaction."""
    run_write(engine, lambda conn: command.upgrade(alembic_config(conn), revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``base`` removes every table and view of the store)."""
    run_write(engine, lambda conn: command.downgrade(alembic_config(conn), revision))


def ensure_current(engine: Engine) -> None:
    """Raise :class:`MigrationNeeded` unless the database is at the head revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = display_url(engine.url.render_as_string(hide_password=False))
        state = "has no memory-store schema" if current is None else f"is at revision {current}"
        raise MigrationNeeded(f"database {where} {state}, this build needs {head}: run `mbc store migrate`")
