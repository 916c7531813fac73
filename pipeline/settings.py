"""Settings of the two pipeline services: the producers (``[producer]``) and the faust stage
(``[pipeline]``). Both share the ``[kafka]`` and ``[topics]`` tables (see infra.settings)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from infra.settings import KafkaSettings, ServiceSettings, TopicSettings
from pipeline.events import Limits


class ProducerSettings(ServiceSettings):
    """`mbc produce feeds` and `mbc produce replay`: publish documents to the raw topic."""

    section: ClassVar[str] = "producer"

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    state_dir: Path = Field(
        Path("mbc-data/producer"), description="where the feed poller keeps what it has published (SQLite)"
    )
    partition_by: Literal["source", "key"] = Field(
        "source",
        description="'source': every document of a source goes to one partition (order per source, "
        "exact duplicate detection per source); 'key': Kafka's default hashing of the id",
    )
    delivery_timeout_s: float = Field(120.0, gt=0, description="give up on a message after this long")
    linger_ms: int = Field(20, ge=0, le=10_000, description="producer batching delay")
    max_message_bytes: int = Field(
        1_000_000,
        ge=1_000,
        description="largest message the producer will send (librdkafka message.max.bytes)",
    )
    poll_interval_s: float = Field(300.0, gt=0, description="seconds between two polls of the same feed")
    http_timeout_s: float = Field(20.0, gt=0, description="connect/read timeout of one HTTP request")
    http_retries: int = Field(3, ge=0, le=20, description="extra attempts within one poll after a failure")
    retry_backoff_s: float = Field(1.0, ge=0, description="wait before the first retry; doubles each time")
    max_backoff_s: float = Field(
        3600.0, gt=0, description="longest wait between polls of a feed that keeps failing"
    )
    max_feed_bytes: int = Field(20_000_000, ge=1_000, description="larger feed responses are refused")
    user_agent: str = "mbc-stream feed poller (+https://github.com/mbc-stream)"


class PipelineSettings(ServiceSettings):
    """`mbc pipeline run`: the faust stage docs.raw → docs.clean / docs.dlq."""

    section: ClassVar[str] = "pipeline"

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    app_id: str = Field(
        "mbc-pipeline", min_length=1, description="faust app id: consumer group and changelog topic prefix"
    )
    state_dir: Path = Field(Path("mbc-data/pipeline"), description="faust's data directory")
    dedup_window_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="same text from the same source within this many seconds is a duplicate",
    )
    max_message_bytes: int = Field(1_000_000, ge=1_000, description="larger raw messages are rejected")
    max_text_bytes: int = Field(500_000, ge=1, description="longer normalized texts are rejected")
    max_title_chars: int = Field(1_000, ge=1, description="longer titles are rejected")
    max_clock_skew_s: float = Field(
        86400.0, ge=0, description="dates this far after the record's timestamp are still plausible"
    )
    min_published_year: int = Field(1900, ge=1, le=9999, description="earlier publication dates are rejected")
    dlq_max_bytes: int = Field(
        900_000,
        ge=1_000,
        description="a DLQ message keeps at most this many original bytes (size and SHA-256 of the whole "
        "original are in its headers)",
    )
    metrics_host: str = Field("127.0.0.1", description="address the Prometheus endpoint binds to")
    metrics_port: int | None = Field(
        9464, ge=0, le=65535, description="Prometheus port; 0 picks a free one, unset disables it"
    )
    session_timeout_s: float = Field(10.0, gt=0, description="Kafka consumer session timeout")
    rebalance_timeout_s: float = Field(20.0, gt=0, description="Kafka consumer rebalance timeout")
    heartbeat_interval_s: float = Field(1.0, gt=0, description="Kafka consumer heartbeat interval")
    commit_interval_s: float = Field(2.0, gt=0, description="how often processed offsets are committed")
    fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=30_000,
        description="longest a fetch waits for data (faust's built-in 1500 ms stalls the stream)",
    )
    declare_topics: bool = Field(
        False, description="let faust create its topics itself (real clusters); the mock broker cannot"
    )

    def limits(self) -> Limits:
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_text_bytes=self.max_text_bytes,
            max_title_chars=self.max_title_chars,
            min_published_at=datetime(self.min_published_year, 1, 1, tzinfo=UTC),
            max_clock_skew=timedelta(seconds=self.max_clock_skew_s),
        )
