"""Migrations up and down on both backends; the store refuses a schema it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from memory_store import migrate
from memory_store.db import make_engine
from memory_store.errors import DatabaseUnreachable, MigrationNeeded
from memory_store.models import Base
from memory_store.store import MemoryStore
from tests.memory_store.helpers import codebook, random_docs

TABLES = {
    "sources",
    "codebook_versions",
    "documents",
    "code_counts",
    "code_counts_daily",
    "consumed_offsets",
    "document_log",
}
VIEWS = {
    "memory_growth_hourly",
    "memory_growth_daily",
    "codebook_usage",
    "source_activity",
    "code_counts_by_day",
}


def schema(engine: sa.Engine) -> tuple[set[str], set[str]]:
    insp = sa.inspect(engine)
    return set(insp.get_table_names()) - {migrate.VERSION_TABLE}, set(insp.get_view_names())


def test_migrations_up_and_down(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    assert migrate.current_revision(engine) is None
    with pytest.raises(MigrationNeeded, match="mbc store migrate"):
        MemoryStore(db_url)

    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision() == "0006_text_sketch"
    assert schema(engine) == (TABLES, VIEWS)
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("codebook_versions")}
    assert "uq_codebook_versions_parent" in indexes
    store = MemoryStore(db_url, index_dir=tmp_path)
    store.write_batch(random_docs(20, store.add_codebook_version(codebook())))

    migrate.downgrade(engine, "0001_schema")  # views go, data stays
    assert schema(engine) == (TABLES - {"document_log"}, set())  # 0005 added the log
    with pytest.raises(MigrationNeeded, match="0001_schema"):
        MemoryStore(db_url)
    migrate.upgrade(engine)
    assert store.stats().documents == 20
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sum(documents) FROM memory_growth_daily")).scalar_one() == 20

    store.close()
    migrate.downgrade(engine, "base")
    assert schema(engine) == (set(), set())
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    with MemoryStore(db_url, index_dir=tmp_path) as again:
        assert again.stats().documents == 0 and again.codebook_versions() == []
    engine.dispose()


def test_models_match_the_migrated_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if "store_alembic_version" not in str(d)]
    engine.dispose()
    assert diff == []


def test_auto_migrate_and_unreachable_database(tmp_path: Path) -> None:
    with MemoryStore(f"sqlite:///{tmp_path / 'sub' / 'm.db'}", auto_migrate=True, index_dir=tmp_path) as s:
        assert s.stats().schema_revision == migrate.head_revision()
    with pytest.raises(DatabaseUnreachable, match="cannot reach database") as e:
        MemoryStore("postgresql+psycopg://nobody:secret@127.0.0.1:1/nothing")
    assert "secret" not in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DatabaseUnreachable, match="unsupported"):
        MemoryStore("mysql://x@localhost/y")


def test_a_store_that_would_not_be_migrated_is_never_created(tmp_path: Path) -> None:
    """Only auto_migrate (mbc learn) and `mbc store migrate` create a database; readers do not."""
    missing = tmp_path / "nodir" / "m.db"
    for options in ({}, {"read_only": True}, {"read_only": True, "auto_migrate": True}):
        with pytest.raises(DatabaseUnreachable) as e:
            MemoryStore(f"sqlite:///{missing}", index_dir=tmp_path, **options)  # type: ignore[arg-type]
        assert str(e.value) == (
            f"no SQLite database at {missing} (check --database-url or MBC_DATABASE__URL; "
            "`mbc store migrate` or `mbc learn` creates one)"
        )
    assert not missing.parent.exists()
