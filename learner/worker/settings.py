"""Settings of the long-lived learner worker (environment ``MBC_*``, TOML table ``[worker]``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from infra.settings import DatabaseSettings, KafkaSettings, ServiceSettings, TopicSettings
from learner.settings import Device

CodebookMode = Literal["frozen", "ema"]
Precision = Literal["auto", "bf16", "fp32", "autocast"]


class WorkerSettings(ServiceSettings):
    """How the worker consumes, batches, encodes, maintains the codebook and reports health."""

    section: ClassVar[str] = "worker"
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    database: DatabaseSettings = DatabaseSettings()
    group_id: str = Field("mbc-learner", description="Kafka consumer group shared by all workers")
    checkpoint: Path | None = Field(None, description="trained checkpoint directory (mbc train output)")
    device: Device = Field("auto", description="auto: CUDA when available")
    batch_max_size: int = Field(64, ge=1, le=100_000, description="documents per batch at most")
    batch_max_wait_s: float = Field(2.0, gt=0, le=3600, description="seconds a partial batch waits at most")
    codebook: CodebookMode = Field("frozen", description="keep the codebook or adapt it online")
    ema_decay: float = Field(0.99, gt=0, lt=1, description="EMA decay of online codebook updates")
    dead_code_threshold: float = Field(1e-4, ge=0, description="EMA usage under which a code is re-seeded")
    publish_every_docs: int = Field(
        2_000, ge=1, description="publish a new codebook version after this many observed documents"
    )
    pipeline_depth: int = Field(
        3,
        ge=1,
        le=8,
        description="batches in flight: tokenize n+1, encode n, write n-1 at once; 1 = serial",
    )
    store_retry_max_s: float = Field(30.0, gt=0, description="longest pause between store retries")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus /metrics and /healthz port"
    )
    precision: Precision = Field(
        "auto", description="amortizer weights: auto = bf16 on CUDA, fp32 on CPU; autocast = the slow path"
    )
    compile: bool = Field(False, description="torch.compile the amortizer (GPU; compiles per new shape)")
    max_doc_tokens: int | None = Field(None, ge=8, description="truncate documents to this many tokens")
    text_sketch: bool = Field(
        True,
        description="store each document's text sketch (2 KB) with its codes: what `mbc ask --retriever "
        "sketch` finds documents by (the text itself is never stored)",
    )
