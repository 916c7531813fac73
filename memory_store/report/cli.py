"""``mbc report``: PNG plots and a Markdown summary of a memory store (SQLite or PostgreSQL).

Registered on the root app by ``mbc/cli.py``. matplotlib and SQLAlchemy are
imported inside the command so that ``mbc --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for report.md and the PNG plots (created if missing).")
    ],
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", help="Memory store URL (default: MBC_DATABASE__URL or [database] url)."
        ),
    ] = None,
) -> None:
    """Write PNG plots (memory size, codebook health, ingest rate) and a one-page report.md of a store."""
    from pydantic import SecretStr

    from infra.logging import configure_logging
    from infra.settings import load_settings
    from memory_store.db import sqlite_path
    from memory_store.errors import DatabaseUnreachable
    from memory_store.report.build import build_report
    from memory_store.settings import StoreSettings
    from memory_store.store import MemoryStore

    settings = load_settings(StoreSettings)
    if database_url:
        db = settings.database.model_copy(update={"url": SecretStr(database_url)})
        settings = settings.model_copy(update={"database": db})
    configure_logging("report", settings.log_level, settings.log_json)
    url = settings.database.url.get_secret_value()
    path = sqlite_path(url)
    if path is not None and not path.is_file():  # opening it would create an empty database
        raise DatabaseUnreachable(f"no SQLite database at {path} (check --database-url or MBC_DATABASE__URL)")
    with MemoryStore(url, index_dir=settings.index_dir, pool_size=1) as store:
        built = build_report(store, out, on_file=lambda p: typer.echo(f"wrote {p}", err=True))
    d = built.data
    typer.echo(
        f"{d.documents:,} documents, {d.code_bytes:,} code bytes ({d.bytes_per_document:.2f} per document), "
        f"{d.float_equivalent_bytes:,} float-equivalent bytes (×{d.compression_ratio:,.1f}); "
        f"{len(d.versions)} codebook versions, {len(d.sources)} sources -> {built.summary}"
    )


def register(app: typer.Typer) -> None:
    """Add the top-level ``report`` command to the root ``mbc`` app."""
    app.command("report")(report)
