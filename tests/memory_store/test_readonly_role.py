"""The documented read-only role (memory_store/sql/readonly_role.sql) can read views, not write."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from memory_store.store import MemoryStore
from tests.memory_store.helpers import codebook, random_docs

SCRIPT = Path(__file__).resolve().parents[2] / "memory_store" / "sql" / "readonly_role.sql"


def test_readonly_role_reads_views_but_cannot_write(fresh_postgres_db: str, tmp_path: Path) -> None:
    store = MemoryStore(fresh_postgres_db, auto_migrate=True, index_dir=tmp_path)
    store.write_batch(random_docs(30, store.add_codebook_version(codebook())))
    engine = sa.create_engine(fresh_postgres_db)
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(SCRIPT.read_text())  # no parameters: sent as psql would send it
        cursor.execute(SCRIPT.read_text())  # safe to run again

    def as_analyst(sql: str) -> object:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET ROLE mbc_readonly")
            return conn.exec_driver_sql(sql).all()

    assert as_analyst("SELECT sum(documents) FROM memory_growth_daily") == [(30,)]
    assert as_analyst("SELECT count(*) FROM memory_growth_hourly")[0][0] >= 1  # type: ignore[index]
    assert as_analyst("SELECT documents FROM codebook_usage") == [(30,)]
    assert as_analyst("SELECT sum(documents) FROM source_activity") == [(30,)]
    assert as_analyst("SELECT count(*) FROM documents") == [(30,)]
    for sql in (
        "DELETE FROM documents",
        "UPDATE code_counts SET n = 0",
        "INSERT INTO sources (name, created_at) VALUES ('x', now())",
        "TRUNCATE consumed_offsets",
        "CREATE TABLE mine (x int)",
        "DROP VIEW codebook_usage",
    ):
        with pytest.raises(sa.exc.ProgrammingError, match=r"permission denied|must be owner"):
            as_analyst(sql)
    assert store.stats().documents == 30
    store.close()
    engine.dispose()
