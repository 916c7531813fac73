"""``mbc learn``: the long-lived learner worker."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from infra.cli import BootstrapServersOption, DatabaseUrlOption, setting_help
from learner.checkpoint_option import CheckpointOption
from learner.settings import Device
from learner.worker.settings import CodebookMode, Precision, WorkerSettings


def _help(text: str, field: str) -> str:
    return setting_help(text, WorkerSettings, field)


def learn(
    checkpoint: CheckpointOption = None,
    codebook: Annotated[
        CodebookMode | None,
        typer.Option(
            help=_help("`frozen` keeps the codebook; `ema` adapts it online as new versions.", "codebook")
        ),
    ] = None,
    batch_max_size: Annotated[
        int | None, typer.Option(help=_help("Documents per batch at most.", "batch_max_size"))
    ] = None,
    batch_max_wait: Annotated[
        float | None, typer.Option(help=_help("Seconds a partial batch waits at most.", "batch_max_wait_s"))
    ] = None,
    device: Annotated[Device | None, typer.Option(help=_help("auto: CUDA when available.", "device"))] = None,
    database_url: DatabaseUrlOption = None,
    bootstrap_servers: BootstrapServersOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help=setting_help(
                "Serve /metrics and /healthz on this port.", WorkerSettings, "metrics_port", default="off"
            )
        ),
    ] = None,
    publish_every: Annotated[
        int | None,
        typer.Option(
            help=_help("With --codebook ema: documents between codebook versions.", "publish_every_docs")
        ),
    ] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(help=_help("Amortizer weights: auto is bf16 on CUDA, fp32 on CPU.", "precision")),
    ] = None,
    pipeline_depth: Annotated[
        int | None,
        typer.Option(
            help=_help(
                "Batches in flight (tokenize, encode, write overlap); 1 = one batch at a time.",
                "pipeline_depth",
            )
        ),
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help=_help("torch.compile the amortizer (GPU).", "compile")),
    ] = None,
) -> None:
    """Consume clean documents from Kafka, fold them into the memory store, until SIGINT/SIGTERM.

    Before the model loads it checks the checkpoint, that Kafka answers and that the store opens
    (creating or upgrading its schema); its first log line names the checkpoint, the store and
    Kafka. The checkpoint comes from --checkpoint or MBC_CHECKPOINT, as for `mbc ask`.
    """
    from infra.shutdown import ShutdownRequest

    shutdown = ShutdownRequest.install()  # before the slow imports and model loading
    from infra.kafka import cluster_metadata
    from infra.logging import configure_logging, get_logger
    from infra.settings import load_settings
    from learner.checkpoint_option import require_checkpoint
    from memory_store.store import MemoryStore

    flags: dict[str, tuple[str, Any]] = {
        "--checkpoint": ("checkpoint", checkpoint),
        "--codebook": ("codebook", codebook),
        "--batch-max-size": ("batch_max_size", batch_max_size),
        "--batch-max-wait": ("batch_max_wait_s", batch_max_wait),
        "--device": ("device", device),
        "--database-url": ("database.url", database_url),
        "--bootstrap-servers": ("kafka.bootstrap_servers", bootstrap_servers),
        "--metrics-port": ("metrics_port", metrics_port),
        "--publish-every": ("publish_every_docs", publish_every),
        "--precision": ("precision", precision),
        "--pipeline-depth": ("pipeline_depth", pipeline_depth),
        "--compile": ("compile", compile),
    }
    settings = load_settings(WorkerSettings, flags=flags)
    configure_logging("learner", settings.log_level, settings.log_json)
    path = require_checkpoint(
        settings.checkpoint, from_flag=checkpoint is not None
    )  # before creating a store
    cluster_metadata(settings.kafka)  # configured and answering, or one line now
    url = settings.database.url.get_secret_value()
    with MemoryStore(url, auto_migrate=True, pool_size=settings.database.pool_size) as store:
        get_logger("mbc.learn").info(
            "learner starting",
            checkpoint=str(path),
            database=settings.database.display_url(),
            kafka=settings.kafka.resolved_bootstrap(),
            topic=settings.topics.clean,
            group=settings.group_id,
            codebook=settings.codebook,
        )
        from learner.inference.encode import DocumentEncoder
        from learner.worker.run import run_worker

        encoder = DocumentEncoder.load(
            path, settings.device, settings.max_doc_tokens, settings.precision, settings.compile
        )
        raise typer.Exit(run_worker(settings, encoder, store, shutdown))


def register(app: typer.Typer) -> None:
    app.command("learn")(learn)
