"""``mbc learn``: the long-lived learner worker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer


def learn(
    checkpoint: Annotated[Path, typer.Option(help="Trained checkpoint directory (from `mbc train`).")],
    codebook: Annotated[
        str | None, typer.Option(help="`frozen` keeps the codebook; `ema` adapts it online as new versions.")
    ] = None,
    batch_max_size: Annotated[int | None, typer.Option(help="Documents per batch at most.")] = None,
    batch_max_wait: Annotated[
        float | None, typer.Option(help="Seconds a partial batch waits at most.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (auto: CUDA when available).")] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Memory store URL (default: MBC_DATABASE__URL).")
    ] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default: MBC_KAFKA__BOOTSTRAP_SERVERS).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics and /healthz on this port.")
    ] = None,
    publish_every: Annotated[
        int | None, typer.Option(help="With --codebook ema: documents between codebook versions.")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="Amortizer weights: auto (bf16 on CUDA, fp32 on CPU), bf16, fp32 or autocast."),
    ] = None,
    pipeline_depth: Annotated[
        int | None,
        typer.Option(help="Batches in flight (tokenize, encode, write overlap); 1 = one batch at a time."),
    ] = None,
    compile: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the amortizer (GPU).")
    ] = None,
) -> None:
    """Consume clean documents from Kafka, fold them into the memory store, until SIGINT/SIGTERM."""
    from infra.shutdown import ShutdownRequest

    shutdown = ShutdownRequest.install()  # before the slow imports and model loading
    from infra.logging import configure_logging
    from infra.settings import load_settings
    from learner.inference.encode import DocumentEncoder
    from learner.worker.run import run_worker
    from learner.worker.settings import WorkerSettings
    from memory_store.store import MemoryStore

    overrides: dict[str, Any] = {
        "checkpoint": checkpoint,
        "codebook": codebook,
        "batch_max_size": batch_max_size,
        "batch_max_wait_s": batch_max_wait,
        "device": device,
        "metrics_port": metrics_port,
        "publish_every_docs": publish_every,
        "precision": precision,
        "compile": compile,
        "pipeline_depth": pipeline_depth,
    }
    if database_url:
        overrides["database"] = {"url": database_url}
    if bootstrap_servers:
        overrides["kafka"] = {"bootstrap_servers": bootstrap_servers}
    settings = load_settings(WorkerSettings, **overrides)
    configure_logging("learner", settings.log_level, settings.log_json)
    if not checkpoint.exists():
        raise typer.BadParameter(f"checkpoint {checkpoint} does not exist", param_hint="--checkpoint")
    dev: Literal["auto", "cpu", "cuda"] = settings.device
    encoder = DocumentEncoder.load(
        checkpoint, dev, settings.max_doc_tokens, settings.precision, settings.compile
    )
    url = settings.database.url.get_secret_value()
    _ensure_sqlite_dir(url)
    with MemoryStore(url, auto_migrate=True, pool_size=settings.database.pool_size) as store:
        raise typer.Exit(run_worker(settings, encoder, store, shutdown))


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def register(app: typer.Typer) -> None:
    app.command("learn")(learn)
