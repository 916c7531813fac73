"""``mbc report``: PNG plots and a Markdown summary of a memory store (SQLite or PostgreSQL).

Registered on the root app by ``mbc/cli.py``. matplotlib and SQLAlchemy are
imported inside the command so that ``mbc --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infra.cli import DatabaseUrlOption


def report(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for report.md and the PNG plots (created if missing).")
    ],
    database_url: DatabaseUrlOption = None,
) -> None:
    """Write PNG plots (memory size, codebook health, ingest rate) and a one-page report.md of a store."""
    from infra.logging import configure_logging
    from infra.settings import load_settings
    from memory_store.report.build import build_report
    from memory_store.settings import StoreSettings
    from memory_store.store import MemoryStore

    settings = load_settings(StoreSettings, flags={"--database-url": ("database.url", database_url)})
    configure_logging("report", settings.log_level, settings.log_json)
    url = settings.database.url.get_secret_value()
    with MemoryStore(url, index_dir=settings.index_dir, pool_size=1, read_only=True) as store:
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
