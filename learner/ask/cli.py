"""``mbc ask`` (one question from the shell) and ``mbc ask-serve`` (the /ask HTTP endpoint)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-11-26T12:00:00Z)", param_hint=name
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _settings(**overrides: Any) -> Any:
    from infra.settings import load_settings
    from learner.ask.settings import AskSettings

    return load_settings(AskSettings, **overrides)


def _open(settings: Any) -> tuple[Any, Any]:
    if settings.checkpoint is None:  # before the heavy imports: a mistake is reported at once
        raise typer.BadParameter(
            "no checkpoint: pass --checkpoint or set MBC_CHECKPOINT", param_hint="--checkpoint"
        )
    from learner.ask.answerer import Answerer
    from memory_store.store import MemoryStore

    store = MemoryStore(settings.database.url.get_secret_value(), pool_size=settings.database.pool_size)
    return store, Answerer(settings.checkpoint, store, settings.device, settings.max_new_tokens)


def ask(
    question: Annotated[str, typer.Argument(help="The question to answer from the memory.")],
    checkpoint: Annotated[Path | None, typer.Option(help="Trained checkpoint directory.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only documents published at or after this ISO time.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only documents published before this ISO time.")] = None,
    source: Annotated[str | None, typer.Option(help="Only documents of this source.")] = None,
    aggregation: Annotated[
        str, typer.Option(help="counts (exact, O(distinct codes)) or naive (every code).")
    ] = "counts",
    database_url: Annotated[
        str | None, typer.Option(help="Memory store URL (default: MBC_DATABASE__URL).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Answer a question from a slice of the stored memory; prints the answer, slice size and latency."""
    from infra.logging import configure_logging

    if aggregation not in ("counts", "naive"):
        raise typer.BadParameter("must be counts or naive", param_hint="--aggregation")
    overrides: dict[str, Any] = {"checkpoint": checkpoint}
    if database_url:
        overrides["database"] = {"url": database_url}
    settings = _settings(**overrides)
    configure_logging("ask", settings.log_level, settings.log_json)
    lo, hi = _when(since, "--since"), _when(until, "--until")
    if lo and hi and lo > hi:
        raise typer.BadParameter("--since is after --until")
    store, answerer = _open(settings)
    with store:
        result = answerer.ask(question, lo, hi, source, aggregation)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(result.answer or "(empty answer)")
    typer.secho(
        f"  from {result.documents} documents ({result.memory_rows} memory rows, {result.aggregation}, "
        f"codebook versions {result.codebook_versions or '-'}) in {result.latency_ms:.1f} ms",
        dim=True,
    )


def ask_serve(
    checkpoint: Annotated[Path | None, typer.Option(help="Trained checkpoint directory.")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Memory store URL (default: MBC_DATABASE__URL).")
    ] = None,
) -> None:
    """Serve POST /ask (bearer token from MBC_QA_TOKEN) answering questions from the memory.

    Without MBC_QA_TOKEN it listens on a loopback address only."""
    import uvicorn

    from infra.auth import check_bind
    from infra.logging import configure_logging, get_logger

    overrides: dict[str, Any] = {"checkpoint": checkpoint, "qa_host": host, "qa_port": port}
    if database_url:
        overrides["database"] = {"url": database_url}
    settings = _settings(**overrides)
    configure_logging("ask", settings.log_level, settings.log_json)
    from learner.ask.settings import qa_tokens

    token = settings.qa_token.get_secret_value() if settings.qa_token else None
    tokens = qa_tokens(token)
    check_bind(settings.qa_host, tokens, "set MBC_QA_TOKEN (or qa_token in [ask]), or listen on 127.0.0.1")
    store, answerer = _open(settings)  # torch is imported from here on
    from learner.ask.service import AskLimits, build_app

    limits = AskLimits(
        settings.qa_max_question_chars, settings.qa_max_concurrent, settings.qa_request_timeout_s
    )
    get_logger("mbc.ask").info(
        "QA service starting",
        host=settings.qa_host,
        auth=tokens.describe(),
        scopes=tokens.enabled,
        **vars(limits),
    )
    with store:
        uvicorn.run(
            build_app(answerer, token, limits), host=settings.qa_host, port=settings.qa_port, log_config=None
        )


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("ask-serve")(ask_serve)
