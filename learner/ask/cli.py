"""``mbc ask`` (one question from the shell) and ``mbc ask-serve`` (the /ask HTTP endpoint)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from infra.cli import DatabaseUrlOption, SinceOption, SourceOption, UntilOption, setting_help
from learner.ask.settings import Aggregation, AskSettings, Retriever
from learner.checkpoint_option import CheckpointOption

if TYPE_CHECKING:
    from learner.ask.answerer import Answerer
    from memory_store.store import MemoryStore

EXIT_NO_ANSWER = 3  # the slice holds no documents: refused, not answered closed-book

RetrieveOption = Annotated[
    int | None,
    typer.Option(
        help=setting_help(
            "Answer from the K documents of the slice that best match the question (FAISS over "
            "document keys), then aggregate exactly over their codes; 0: the whole slice.",
            AskSettings,
            "retrieve",
        )
    ),
]

RetrieverOption = Annotated[
    Retriever | None,
    typer.Option(
        help=setting_help(
            "What --retrieve ranks by: keys (from each document's codes) or sketch (each document's "
            "text sketch, found by the question's words).",
            AskSettings,
            "retriever",
        )
    ),
]


def _settings(**flags: tuple[str, Any]) -> AskSettings:
    from infra.logging import configure_logging
    from infra.settings import load_settings

    settings = load_settings(AskSettings, flags=flags)
    configure_logging("ask", settings.log_level, settings.log_json)
    return settings


def _open(settings: AskSettings, from_flag: bool) -> tuple[MemoryStore, Answerer]:
    """The store (read-only: never created) and the answerer; the checkpoint is checked first."""
    from learner.checkpoint_option import require_checkpoint

    path = require_checkpoint(settings.checkpoint, from_flag)
    from learner.inference.device import pick_device
    from memory_store.store import MemoryStore

    url = settings.database.url.get_secret_value()
    device = pick_device(settings.device)  # a GPU reader searches the document keys there too
    key_device = str(device) if device.type == "cuda" else None
    store = MemoryStore(url, pool_size=settings.database.pool_size, read_only=True, key_device=key_device)
    try:
        from learner.ask.answerer import Answerer

        answerer = Answerer(
            path, store, str(device), settings.max_new_tokens, settings.cite, settings.retriever
        )
        return store, answerer
    except BaseException:
        store.close()
        raise


def ask(
    question: Annotated[str, typer.Argument(help="The question to answer from the memory.")],
    checkpoint: CheckpointOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    source: SourceOption = None,
    aggregation: Annotated[
        Aggregation | None,
        typer.Option(
            help=setting_help(
                "counts (exact, O(distinct codes)) or naive (every stored code).", AskSettings, "aggregation"
            )
        ),
    ] = None,
    retrieve: RetrieveOption = None,
    retriever: RetrieverOption = None,
    database_url: DatabaseUrlOption = None,
    as_json: Annotated[bool, typer.Option("--json/--no-json", help="Print the answer as JSON.")] = False,
) -> None:
    """Answer a question from a slice of the stored memory; prints the answer, slice size and latency.

    The checkpoint must be the one `mbc learn` stored the memory with (the codes index its codebook).
    A slice with no documents is refused, never answered from the model alone: `mbc ask` says why on
    stderr and exits 3 (with --json the answer is null and `refusal` says why).

    Every answer cites the documents it drew on (id, title, url, published_at) with the share of the
    aggregator's attention each got: with --retrieve K the K retrieved documents, with --retrieve 0
    the slice's best-retrieved (`cite` of them, MBC_CITE) with their share of the whole slice.

    Exit codes: 0 answered; 2 a bad question, flag or setting, or an unreachable store; 3 no answer
    (the slice holds no documents).
    """
    from infra.cli import check_window, parse_time
    from learner.ask.question import question_problem
    from learner.errors import BlankQuestion

    if problem := question_problem(question):
        raise BlankQuestion(problem)
    lo, hi = parse_time(since, "--since"), parse_time(until, "--until")
    check_window(lo, hi)
    settings = _settings(
        **{
            "--checkpoint": ("checkpoint", checkpoint),
            "--aggregation": ("aggregation", aggregation),
            "--retrieve": ("retrieve", retrieve),
            "--retriever": ("retriever", retriever),
            "--database-url": ("database.url", database_url),
        }
    )
    store, answerer = _open(settings, from_flag=checkpoint is not None)
    with store:
        result = answerer.ask(question, lo, hi, source, settings.aggregation, settings.retrieve)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif result.answer is not None:
        typer.echo(result.answer or "(empty answer)")
        typer.secho(
            f"  from {result.documents} documents ({result.memory_rows} memory rows, {result.aggregation}, "
            f"codebook versions {result.codebook_versions or '-'}) in {result.latency_ms:.1f} ms; "
            f"checkpoint {settings.checkpoint}",
            dim=True,
        )
        _print_citations(result)
    if result.refusal is not None:
        typer.secho(f"no answer: {result.refusal}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_NO_ANSWER)


def _print_citations(result: Any) -> None:
    how = f"the {result.retrieve} retrieved" if result.retrieve else "the whole slice's"
    typer.secho(f"  cites ({how} documents, by attention mass):", dim=True)
    for c in result.citations:
        title = f" {c.title!r}" if c.title else ""
        url = f" {c.url}" if c.url else ""
        typer.secho(
            f"    {c.attention_mass:6.1%}  {c.id}{title} ({c.source}, {c.published_at}){url}", dim=True
        )
    if not result.retrieve and result.citations:
        typer.secho(f"    {result.uncited_mass:6.1%}  the other documents of the slice", dim=True)


def ask_serve(
    checkpoint: CheckpointOption = None,
    host: Annotated[
        str | None, typer.Option(help=setting_help("Interface to listen on.", AskSettings, "qa_host"))
    ] = None,
    port: Annotated[
        int | None, typer.Option(help=setting_help("Port to listen on.", AskSettings, "qa_port"))
    ] = None,
    retrieve: RetrieveOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Serve POST /ask (bearer token from MBC_QA_TOKEN) answering questions from the memory.

    Without MBC_QA_TOKEN it listens on a loopback address only. A slice with no documents gets
    200 with `"answer": null` and `refusal` saying why; a blank question gets 422. --retrieve is the
    default of requests that do not send `retrieve`; every answer carries its `citations`."""
    import uvicorn

    from infra.auth import check_bind
    from infra.logging import get_logger
    from learner.ask.settings import qa_tokens

    settings = _settings(
        **{
            "--checkpoint": ("checkpoint", checkpoint),
            "--host": ("qa_host", host),
            "--port": ("qa_port", port),
            "--retrieve": ("retrieve", retrieve),
            "--database-url": ("database.url", database_url),
        }
    )
    token = settings.qa_token.get_secret_value() if settings.qa_token else None
    tokens = qa_tokens(token)
    check_bind(settings.qa_host, tokens, "set MBC_QA_TOKEN (or qa_token in [ask]), or listen on 127.0.0.1")
    store, answerer = _open(settings, from_flag=checkpoint is not None)  # torch is imported from here on
    from learner.ask.service import AskLimits, build_app

    limits = AskLimits(
        settings.qa_max_question_chars,
        settings.qa_max_concurrent,
        settings.qa_request_timeout_s,
        settings.retrieve,
    )
    get_logger("mbc.ask").info(
        "QA service starting",
        checkpoint=str(settings.checkpoint),
        database=settings.database.display_url(),
        host=settings.qa_host,
        port=settings.qa_port,
        auth=tokens.describe(),
        scopes=tokens.enabled,
        **vars(limits),
    )
    with store:
        store.documents_index.refresh()  # build the document-key index now, not on the first request
        get_logger("mbc.ask").info("document index ready", **store.documents_index.describe())
        uvicorn.run(
            build_app(answerer, token, limits), host=settings.qa_host, port=settings.qa_port, log_config=None
        )


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("ask-serve")(ask_serve)
