"""`mbc produce …`, `mbc pipeline …` and `mbc topics …` (registered by mbc/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from corpora.formats import DocumentFormat
from infra.cli import BootstrapServersOption, setting_help
from infra.settings import load_settings
from pipeline.settings import PipelineSettings, ProducerSettings

EXIT_FEEDS_FAILED = 3

produce_app = typer.Typer(help="Publish documents to the raw topic (docs.raw).", no_args_is_help=True)
pipeline_app = typer.Typer(
    help="The faust stage: validate, normalize, deduplicate and dead-letter the raw documents.",
    no_args_is_help=True,
)
topics_app = typer.Typer(help="Look at Kafka topics.", no_args_is_help=True)


@produce_app.command("feeds")
def produce_feeds(
    url: Annotated[
        list[str] | None, typer.Option("--url", help="A feed URL (repeat for several). [default: none]")
    ] = None,
    feeds_file: Annotated[
        Path | None,
        typer.Option(help="A file with one feed URL per line (# starts a comment). [default: none]"),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            help=setting_help("Seconds between two polls of a feed.", ProducerSettings, "poll_interval_s")
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once/--no-once", help="Poll every feed once, then exit.")] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help=setting_help(
                "Where to remember what was published (survives restarts).", ProducerSettings, "state_dir"
            )
        ),
    ] = None,
    bootstrap_servers: BootstrapServersOption = None,
) -> None:
    """Poll RSS/Atom feeds and publish their new items; Ctrl-C or SIGTERM flushes and exits 0.

    Exit codes: 0 done; 1 some documents were not delivered; 3 (with --once) a feed failed.
    """
    import asyncio

    from infra.logging import configure_logging
    from pipeline.errors import DeliveryError, PipelineError
    from pipeline.feeds.poller import FeedPoller, check_url, read_feeds_file
    from pipeline.feeds.state import FeedState
    from pipeline.producer import DocumentProducer

    settings = load_settings(
        ProducerSettings,
        flags={
            "--interval": ("poll_interval_s", interval),
            "--state-dir": ("state_dir", state_dir),
            "--bootstrap-servers": ("kafka.bootstrap_servers", bootstrap_servers),
        },
    )
    configure_logging("producer", settings.log_level, settings.log_json)
    urls = [check_url(u, "--url") for u in url or []]
    if feeds_file is not None:
        try:
            text = feeds_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) else "not a text file"
            raise PipelineError(f"--feeds-file {feeds_file}: cannot read it ({why})") from e
        urls += read_feeds_file(text, f"--feeds-file {feeds_file}")
    if not urls:
        raise typer.BadParameter("give at least one --url or a --feeds-file with URLs", param_hint="--url")
    producer = DocumentProducer(settings)  # Kafka configured and reachable before any state is written
    state = FeedState(settings.state_dir)
    try:
        summary = asyncio.run(FeedPoller(settings, urls, producer, state).run(once=once))
    finally:
        lost = producer.close()
        state.close()
    typer.echo(
        f"polls {summary.polls} (not modified {summary.not_modified}), items {summary.items}, "
        f"published {summary.published}, lost {lost}, failing feeds {len(summary.failed_feeds)}",
        err=True,
    )
    if lost:
        raise DeliveryError(f"{lost} documents were not delivered to Kafka")
    if once and summary.failed_feeds:
        raise typer.Exit(EXIT_FEEDS_FAILED)


@produce_app.command("replay")
def produce_replay(
    path: Annotated[Path, typer.Argument(help="The dataset file (.gz is fine).")],
    format: Annotated[
        DocumentFormat | None,
        typer.Option("--format", help="The file's format. [default: from the file name]", show_default=False),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(min=0.001, help="At most this many documents per second. [default: no limit]"),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=0, help="Only the first N documents in publication order. [default: all]"),
    ] = None,
    skip: Annotated[
        int, typer.Option(min=0, help="Leave out the first N documents in publication order (to resume).")
    ] = 0,
    source: Annotated[
        str | None, typer.Option(help="Source name of the documents. [default: the file name]")
    ] = None,
    title_as_text: Annotated[
        bool,
        typer.Option(
            "--title-as-text/--no-title-as-text", help="Use the title as text when a record has no body."
        ),
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar. [default: on a terminal]",
            show_default=False,
        ),
    ] = None,
    bootstrap_servers: BootstrapServersOption = None,
) -> None:
    """Replay a dataset or news archive into the raw topic in publication order."""
    from infra.logging import configure_logging
    from infra.shutdown import ShutdownRequest
    from pipeline.errors import DeliveryError
    from pipeline.replay.run import replay

    settings = load_settings(
        ProducerSettings, flags={"--bootstrap-servers": ("kafka.bootstrap_servers", bootstrap_servers)}
    )
    configure_logging("producer", settings.log_level, settings.log_json)
    with ShutdownRequest().installed() as stop:
        summary = replay(
            path,
            settings,
            fmt=format,
            source=source,
            rate=rate,
            limit=limit,
            skip=skip,
            title_as_text=title_as_text,
            progress=progress,
            stop=stop,
        )
    typer.echo(
        f"{'stopped' if summary.stopped else 'replayed'}: {summary.delivered} of {summary.records} documents "
        f"delivered in {summary.seconds:.1f} s ({summary.rate:,.0f}/s), lost {summary.lost}",
        err=True,
    )
    if summary.lost:
        raise DeliveryError(f"{summary.lost} documents were not delivered to Kafka")


@pipeline_app.command("run")
def pipeline_run(
    app_id: Annotated[
        str | None,
        typer.Option(
            help=setting_help("faust app id (consumer group, changelog prefix).", PipelineSettings, "app_id")
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help=setting_help("Prometheus port (0 picks a free one).", PipelineSettings, "metrics_port")
        ),
    ] = None,
    dedup_window: Annotated[
        float | None,
        typer.Option(
            help=setting_help(
                "Seconds within which the same text from a source is a duplicate.",
                PipelineSettings,
                "dedup_window_s",
            )
        ),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help=setting_help("faust's data directory.", PipelineSettings, "state_dir"))
    ] = None,
    bootstrap_servers: BootstrapServersOption = None,
) -> None:
    """Run the stage docs.raw → docs.clean / docs.dlq until SIGINT/SIGTERM."""
    from infra.logging import configure_logging
    from pipeline.stage.worker import run_stage

    settings = load_settings(
        PipelineSettings,
        flags={
            "--app-id": ("app_id", app_id),
            "--metrics-port": ("metrics_port", metrics_port),
            "--dedup-window": ("dedup_window_s", dedup_window),
            "--state-dir": ("state_dir", state_dir),
            "--bootstrap-servers": ("kafka.bootstrap_servers", bootstrap_servers),
        },
    )
    configure_logging("pipeline", settings.log_level, settings.log_json)
    run_stage(settings)


@pipeline_app.command("stats")
def pipeline_stats(
    as_json: Annotated[bool, typer.Option("--json/--no-json", help="Print JSON instead of a table.")] = False,
    bootstrap_servers: BootstrapServersOption = None,
) -> None:
    """Show the stage's accounting: raw messages against accepted, duplicate and rejected."""
    from pipeline.stage.accounting import read_accounting

    settings = load_settings(
        PipelineSettings, flags={"--bootstrap-servers": ("kafka.bootstrap_servers", bootstrap_servers)}
    )
    books = read_accounting(settings)
    if as_json:
        typer.echo(json.dumps(books.summary(), indent=2))
        return
    typer.echo(f"{'partition':>9} {'raw':>9} {'accepted':>9} {'duplicate':>9} {'rejected':>9} {'pending':>9}")
    for p, (low, high) in sorted(books.raw.items()):
        ledger = books.ledgers.get(p)
        acc, dup, rej = (
            (ledger.accepted, ledger.duplicate, sum(ledger.rejected.values())) if ledger else (0, 0, 0)
        )
        typer.echo(f"{p:>9} {high - low:>9} {acc:>9} {dup:>9} {rej:>9} {books.pending(p):>9}")
    s = books.summary()
    rejected = sum(s["rejected"].values())
    typer.echo(
        f"{'total':>9} {s['raw']:>9} {s['accepted']:>9} {s['duplicate']:>9} {rejected:>9} {s['pending']:>9}"
    )
    for reason, n in s["rejected"].items():
        typer.echo(f"  rejected {reason}: {n}")
    if s["skipped"]:
        typer.echo(f"  skipped (deleted by the broker before the stage read them): {s['skipped']}")


@topics_app.command("tail")
def topics_tail(
    topic: Annotated[str, typer.Argument(help="The topic to read, e.g. docs.clean.")],
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning/--no-from-beginning", help="Start at the first message instead of new ones."
        ),
    ] = False,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many messages. [default: no limit]")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow", help="Keep waiting for new messages, or stop at the end of the topic."
        ),
    ] = True,
    bootstrap_servers: BootstrapServersOption = None,
) -> None:
    """Print a topic's messages for a person: key, partition, offset, time and a summary of the value."""
    from infra.logging import configure_logging
    from pipeline.tail import format_record
    from pipeline.topic_reader import read

    settings = load_settings(
        ProducerSettings, flags={"--bootstrap-servers": ("kafka.bootstrap_servers", bootstrap_servers)}
    )
    configure_logging("producer", settings.log_level, settings.log_json)
    try:
        for rec in read(settings.kafka, topic, from_beginning=from_beginning, follow=follow, limit=count):
            typer.echo(format_record(rec))
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.add_typer(produce_app, name="produce")
    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(topics_app, name="topics")
