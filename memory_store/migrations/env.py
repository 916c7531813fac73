"""Alembic environment of the memory store.

Called with a connection by :mod:`memory_store.migrate` (the usual path), or by the ``alembic``
command with ``-c memory_store/alembic.ini``; then the URL comes from the store settings
(``MBC_DATABASE__URL`` or the config file). Offline mode (``--sql``) writes the DDL as a script.
"""

from __future__ import annotations

from alembic import context

from memory_store.migrate import VERSION_TABLE
from memory_store.models import Base

config = context.config


def _url() -> str:
    from infra.settings import load_settings
    from memory_store.settings import StoreSettings

    return (
        config.get_main_option("sqlalchemy.url")
        or load_settings(StoreSettings).database.url.get_secret_value()
    )


def run_offline() -> None:
    context.configure(
        url=_url(), target_metadata=Base.metadata, version_table=VERSION_TABLE, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from memory_store.db import make_engine

        engine = make_engine(_url())
        with engine.connect() as conn:
            conn.execution_options(store_write=True)
            _run(conn)
            conn.commit()
        engine.dispose()
    else:
        _run(connection)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
