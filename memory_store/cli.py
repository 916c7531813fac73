"""``mbc store …``: migrate, inspect and serve the memory store.

Heavy imports (SQLAlchemy, Alembic, FAISS, FastAPI) happen inside the commands so ``mbc --help``
stays fast.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from infra.cli import (
    DatabaseUrlOption,
    SinceOption,
    SourceOption,
    UntilOption,
    check_window,
    parse_time,
    setting_help,
)
from memory_store.settings import StoreSettings

if TYPE_CHECKING:
    from memory_store.store import MemoryStore

store_app = typer.Typer(
    help="The memory store: schema migrations, stats, views and the reader service.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json/--no-json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    """Add the ``store`` command group to the root ``mbc`` app."""
    app.add_typer(store_app, name="store")


def _settings(url: str | None, **flags: tuple[str, Any]) -> StoreSettings:
    from infra.logging import configure_logging
    from infra.settings import load_settings

    s = load_settings(StoreSettings, flags={"--database-url": ("database.url", url), **flags})
    configure_logging("store", s.log_level, s.log_json)
    if s.log_level != "DEBUG":  # Alembic narrates every step at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return s


def _open(s: StoreSettings, *, read_only: bool) -> MemoryStore:
    """The store; ``read_only`` commands never create a database (nor migrate one)."""
    from memory_store.store import MemoryStore

    return MemoryStore(
        s.database.url.get_secret_value(),
        auto_migrate=s.auto_migrate,
        index_dir=s.index_dir,
        pool_size=s.database.pool_size,
        read_only=read_only,
    )


@store_app.command("migrate")
def migrate(
    database_url: DatabaseUrlOption = None,
    revision: Annotated[str, typer.Option(help="Target revision ('head': the newest).")] = "head",
) -> None:
    """Create or upgrade the store's tables and views to the newest (or a given) revision."""
    from memory_store import migrate as m
    from memory_store.db import make_engine

    s = _settings(database_url)
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
    database_url: DatabaseUrlOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do it: downgrading may drop data.")] = False,
) -> None:
    """Downgrade the store's schema to an older revision (drops what newer revisions added)."""
    from memory_store import migrate as m
    from memory_store.db import make_engine

    if not yes:
        raise typer.BadParameter("downgrading may drop data; add --yes to go ahead", param_hint="--yes")
    s = _settings(database_url)
    engine = make_engine(s.database.url.get_secret_value(), must_exist=True)
    try:
        before = m.current_revision(engine)
        m.downgrade(engine, revision)
        typer.echo(
            f"{s.database.display_url()}: {before or 'empty'} -> {m.current_revision(engine) or 'empty'}"
        )
    finally:
        engine.dispose()


@store_app.command("stats")
def stats(database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Print how large the memory is and what a float memory of the same documents would need."""
    from dataclasses import asdict

    s = _settings(database_url)
    with _open(s, read_only=True) as store:
        st = store.stats()
    data = {**asdict(st), "compression_ratio": st.compression_ratio, "database": s.database.display_url()}
    _print(data, as_json)


@store_app.command("counts")
def counts(
    database_url: DatabaseUrlOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    source: SourceOption = None,
    version: Annotated[int | None, typer.Option(help="Only this codebook version. [default: all]")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print exact code counts per (codebook version, code) for a slice of the memory."""
    lo, hi = parse_time(since, "--since"), parse_time(until, "--until")
    check_window(lo, hi)
    s = _settings(database_url)
    with _open(s, read_only=True) as store:
        rows = store.counts(since=lo, until=hi, source=source, version=version)
    if as_json:
        typer.echo(json.dumps([r._asdict() for r in rows]))
        return
    typer.echo(f"{len(rows)} codes, {sum(r.n for r in rows)} stored codes")
    for r in rows:
        typer.echo(f"v{r.codebook_version}\t{r.code}\t{r.n}")


@store_app.command("views")
def views(
    name: Annotated[str | None, typer.Argument(help="A view to print; omit to list the views.")] = None,
    database_url: DatabaseUrlOption = None,
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
        raise typer.BadParameter(f"unknown view {name!r}; known: {', '.join(VIEWS)}", param_hint="NAME")
    s = _settings(database_url)
    with _open(s, read_only=True) as store:
        columns, rows = read_view(store.engine, name, limit)
    if as_json:
        typer.echo(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str))
    else:
        typer.echo(_table(columns, rows))


@store_app.command("delete")
def delete(
    doc_ids: Annotated[list[str], typer.Argument(help="Ids of the documents to delete.")],
    database_url: DatabaseUrlOption = None,
) -> None:
    """Delete documents; their codes leave the counts in the same transaction."""
    s = _settings(database_url)
    with _open(s, read_only=False) as store:
        gone = store.delete_documents(doc_ids)
    typer.echo(f"deleted {len(gone)} of {len(set(doc_ids))} documents")


@store_app.command("reindex")
def reindex(
    database_url: DatabaseUrlOption = None,
    version: Annotated[int | None, typer.Option(help="Only this codebook version. [default: all]")] = None,
) -> None:
    """Rebuild the FAISS index files of the codebook versions from the database."""
    s = _settings(database_url)
    with _open(s, read_only=False) as store:
        versions = [version] if version is not None else [i.version for i in store.codebook_versions()]
        for v in versions:
            store.code_index(v)  # raises UnknownCodebookVersion early
            store.indexes.rebuild(v)
            typer.echo(f"codebook v{v}: {store.indexes.paths(v)[0]}")


@store_app.command("serve")
def serve(
    database_url: DatabaseUrlOption = None,
    host: Annotated[
        str | None, typer.Option(help=setting_help("Address to bind.", StoreSettings, "api_host"))
    ] = None,
    port: Annotated[
        int | None, typer.Option(help=setting_help("Port to listen on.", StoreSettings, "api_port"))
    ] = None,
) -> None:
    """Run the reader service (FastAPI): health, stats, codebooks, counts, documents.

    Needs a read token (MBC_API_READ_TOKEN), an admin token (MBC_API_ADMIN_TOKEN) or both."""
    import os

    import uvicorn

    from infra.errors import ConfigError
    from infra.logging import get_logger
    from memory_store.api import ApiLimits, create_app, reader_tokens

    s = _settings(database_url, **{"--host": ("api_host", host), "--port": ("api_port", port)})
    tokens = reader_tokens(s.api_read_token, s.api_admin_token)
    if tokens.open:
        old = " (MBC_API_TOKEN is no longer read)" if os.environ.get("MBC_API_TOKEN") else ""
        raise ConfigError(
            "the reader service needs a token: set MBC_API_READ_TOKEN (read scope) and/or "
            f"MBC_API_ADMIN_TOKEN (admin scope), or api_read_token / api_admin_token in [store]{old}"
        )
    limits = ApiLimits(s.api_max_nearest_vectors, s.api_max_nearest_k)
    with _open(s, read_only=False) as store:  # the admin scope deletes and reindexes
        get_logger("mbc.store").info(
            "reader service starting",
            host=s.api_host,
            port=s.api_port,
            database=s.database.display_url(),
            auth=tokens.describe(),
            scopes=tokens.enabled,
        )
        app = create_app(store, s.api_read_token, s.api_admin_token, limits)
        uvicorn.run(app, host=s.api_host, port=s.api_port, log_config=None)


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
