"""``mbc store …``: migrate, inspect and serve the memory store.

Heavy imports (SQLAlchemy, Alembic, FAISS, FastAPI) happen inside the commands so ``mbc --help``
stays fast.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from memory_store.settings import StoreSettings
    from memory_store.store import MemoryStore

store_app = typer.Typer(help="The memory store: schema migrations, stats, views and the reader service.")

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (overrides MBC_DATABASE__URL and the config file)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    """Add the ``store`` command group to the root ``mbc`` app."""
    app.add_typer(store_app, name="store")


def _settings(url: str | None) -> StoreSettings:
    from pydantic import SecretStr

    from infra.logging import configure_logging
    from infra.settings import load_settings
    from memory_store.settings import StoreSettings

    s = load_settings(StoreSettings)
    if url:
        s = s.model_copy(update={"database": s.database.model_copy(update={"url": SecretStr(url)})})
    configure_logging("store", s.log_level, s.log_json)
    if s.log_level != "DEBUG":  # Alembic narrates every step at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return s


def _open(s: StoreSettings, auto_migrate: bool | None = None) -> MemoryStore:
    from memory_store.store import MemoryStore

    return MemoryStore(
        s.database.url.get_secret_value(),
        auto_migrate=s.auto_migrate if auto_migrate is None else auto_migrate,
        index_dir=s.index_dir,
        pool_size=s.database.pool_size,
    )


@store_app.command("migrate")
def migrate(
    url: UrlOption = None,
    revision: Annotated[str, typer.Option(help="Target revision (default: the newest).")] = "head",
) -> None:
    """Create or upgrade the store's tables and views to the newest (or a given) revision."""
    from memory_store import migrate as m
    from memory_store.db import make_engine

    s = _settings(url)
    engine = make_engine(s.database.url.get_secret_value())
    try:
        before = m.current_revision(engine)
        m.upgrade(engine, revision)
        typer.echo(f"{s.database.display_url()}: {before or 'empty'} -> {m.current_revision(engine)}")
    finally:
        engine.dispose()


@store_app.command("downgrade")
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' removes every store table.")],
    url: UrlOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do it: downgrading may drop data.")] = False,
) -> None:
    """Downgrade the store's schema to an older revision (drops what newer revisions added)."""
    from memory_store import migrate as m
    from memory_store.db import make_engine

    if not yes:
        raise typer.BadParameter("downgrading may drop data; add --yes to go ahead", param_hint="--yes")
    s = _settings(url)
    engine = make_engine(s.database.url.get_secret_value())
    try:
        before = m.current_revision(engine)
        m.downgrade(engine, revision)
        typer.echo(
            f"{s.database.display_url()}: {before or 'empty'} -> {m.current_revision(engine) or 'empty'}"
        )
    finally:
        engine.dispose()


@store_app.command("stats")
def stats(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Print how large the memory is and what a float memory of the same documents would need."""
    from dataclasses import asdict

    s = _settings(url)
    with _open(s) as store:
        st = store.stats()
    data = {**asdict(st), "compression_ratio": st.compression_ratio, "database": s.database.display_url()}
    _print(data, as_json)


@store_app.command("counts")
def counts(
    url: UrlOption = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only documents published at or after (UTC).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Only documents published before (UTC).")] = None,
    source: Annotated[str | None, typer.Option(help="Only documents of this source.")] = None,
    version: Annotated[int | None, typer.Option(help="Only this codebook version.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print exact code counts per (codebook version, code) for a slice of the memory."""
    s = _settings(url)
    with _open(s) as store:
        rows = store.counts(since=since, until=until, source=source, version=version)
    if as_json:
        typer.echo(json.dumps([r._asdict() for r in rows]))
        return
    typer.echo(f"{len(rows)} codes, {sum(r.n for r in rows)} stored codes")
    for r in rows:
        typer.echo(f"v{r.codebook_version}\t{r.code}\t{r.n}")


@store_app.command("views")
def views(
    name: Annotated[str | None, typer.Argument(help="A view to print; omit to list the views.")] = None,
    url: UrlOption = None,
    limit: Annotated[
        int, typer.Option(help="Print at most this many rows (the newest for growth views).")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List the SQL views for people, or print the rows of one."""
    from memory_store.views import VIEWS, read_view

    if name is None:
        for view, text in VIEWS.items():
            typer.echo(f"{view}\t{text}")
        return
    if name not in VIEWS:
        raise typer.BadParameter(f"unknown view {name!r}; known: {', '.join(VIEWS)}")
    s = _settings(url)
    with _open(s) as store:
        columns, rows = read_view(store.engine, name, limit)
    if as_json:
        typer.echo(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
    else:
        typer.echo(_table(columns, rows))


@store_app.command("delete")
def delete(
    doc_ids: Annotated[list[str], typer.Argument(help="Ids of the documents to delete.")],
    url: UrlOption = None,
) -> None:
    """Delete documents; their codes leave the counts in the same transaction."""
    s = _settings(url)
    with _open(s) as store:
        gone = store.delete_documents(doc_ids)
    typer.echo(f"deleted {len(gone)} of {len(set(doc_ids))} documents")


@store_app.command("reindex")
def reindex(
    url: UrlOption = None,
    version: Annotated[int | None, typer.Option(help="Only this codebook version.")] = None,
) -> None:
    """Rebuild the FAISS index files of the codebook versions from the database."""
    s = _settings(url)
    with _open(s) as store:
        versions = [version] if version is not None else [i.version for i in store.codebook_versions()]
        for v in versions:
            store.code_index(v)  # raises UnknownCodebookVersion early
            store.indexes.rebuild(v)
            typer.echo(f"codebook v{v}: {store.indexes.paths(v)[0]}")


@store_app.command("serve")
def serve(
    url: UrlOption = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default: [store] api_host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: [store] api_port).")] = None,
) -> None:
    """Run the reader service (FastAPI): health, stats, codebooks, counts, documents.

    Needs a read token (MBC_API_READ_TOKEN), an admin token (MBC_API_ADMIN_TOKEN) or both."""
    import os

    import uvicorn

    from infra.errors import ConfigError
    from infra.logging import get_logger
    from memory_store.api import ApiLimits, create_app, reader_tokens

    s = _settings(url)
    tokens = reader_tokens(s.api_read_token, s.api_admin_token)
    if tokens.open:
        old = " (MBC_API_TOKEN is no longer read)" if os.environ.get("MBC_API_TOKEN") else ""
        raise ConfigError(
            "the reader service needs a token: set MBC_API_READ_TOKEN (read scope) and/or "
            f"MBC_API_ADMIN_TOKEN (admin scope), or api_read_token / api_admin_token in [store]{old}"
        )
    limits = ApiLimits(s.api_max_nearest_vectors, s.api_max_nearest_k)
    bind = host or s.api_host
    get_logger("mbc.store").info(
        "reader service starting", host=bind, auth=tokens.describe(), scopes=tokens.enabled
    )
    with _open(s) as store:
        app = create_app(store, s.api_read_token, s.api_admin_token, limits)
        uvicorn.run(app, host=bind, port=port or s.api_port, log_config=None)


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, default=str, indent=2))
    else:
        for key, value in data.items():
            typer.echo(f"{key:24} {value}")


def _table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [columns, *[["" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
