"""Shared fixtures: the embedded broker, a real PostgreSQL server, database URLs for both
backends, and the shared data directory.

PostgreSQL comes from ``MBC_TEST_DATABASE_URL`` when set, otherwise from a throwaway cluster
started from the local server binaries. If neither works, tests marked ``postgres`` are skipped
with the reason — and when ``MBC_REQUIRE_POSTGRES=1`` (as ``scripts/run.sh test`` and CI set it)
the run fails if any such test was skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.broker import BrokerProcess
from infra.throwaway_postgres import PostgresUnavailable, ThrowawayPostgres

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MBC_SHARED_DATA", REPO.parent / "shared" / "data"))

_postgres_skips: list[str] = []


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data when present (CI has it); tests using it skip cleanly otherwise."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set MBC_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap address of an embedded Kafka-protocol broker in a child process."""
    with BrokerProcess() as b:
        yield b.bootstrap_servers


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[str | PostgresUnavailable]:
    if url := os.environ.get("MBC_TEST_DATABASE_URL"):
        yield url
        return
    try:
        server = ThrowawayPostgres()
        server.start()
    except PostgresUnavailable as e:
        yield e
        return
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, _postgres_server: str | PostgresUnavailable) -> str:
    """URL of a real PostgreSQL server (SQLAlchemy form, psycopg 3 driver)."""
    if isinstance(_postgres_server, PostgresUnavailable):
        reason = f"PostgreSQL unavailable: {_postgres_server}"
        _postgres_skips.append(f"{request.node.nodeid}: {reason}")
        pytest.skip(reason)
    return _postgres_server


@pytest.fixture
def fresh_postgres_db(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the Postgres server, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    name = "mbc_test_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One test, both backends: a fresh SQLite file and a fresh Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'memory.db'}"
    return str(request.getfixturevalue("fresh_postgres_db"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()) or "fresh_postgres_db" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.postgres)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if _postgres_skips:
        terminalreporter.section("PostgreSQL tests skipped", sep="!", red=True, bold=True)
        for line in _postgres_skips:
            terminalreporter.line(line, red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _postgres_skips and os.environ.get("MBC_REQUIRE_POSTGRES") == "1":
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
