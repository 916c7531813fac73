from __future__ import annotations

import psutil
import sqlalchemy as sa

from infra.throwaway_postgres import ThrowawayPostgres


def test_postgres_fixture_gives_working_server(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as c:
        c.execute(sa.text("CREATE TEMP TABLE t (x int)"))
        c.execute(sa.text("INSERT INTO t VALUES (1), (2), (3)"))
        assert c.execute(sa.text("SELECT sum(x) FROM t")).scalar_one() == 6
        assert "PostgreSQL" in c.execute(sa.text("SELECT version()")).scalar_one()
    engine.dispose()


def test_throwaway_cluster_leaves_nothing_behind(postgres_url: str) -> None:
    # postgres_url proves binaries are usable (or a server is configured); start a second cluster here.
    server = ThrowawayPostgres()
    try:
        server.start()
    except Exception:
        import os

        if os.environ.get("MBC_TEST_DATABASE_URL"):
            import pytest

            pytest.skip("external MBC_TEST_DATABASE_URL in use and no local server binaries")
        raise
    pid = server.postmaster_pid()
    assert pid is not None and psutil.pid_exists(pid)
    engine = sa.create_engine(server.url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT 1")).scalar_one() == 1
    engine.dispose()
    root = server.root
    server.stop()
    assert not root.exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
