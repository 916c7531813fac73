"""The faust app's configuration, translated from our settings.

The same ``[kafka]`` settings the confluent clients use (bootstrap servers, security protocol,
SASL, SSL files) become aiokafka's, so the stage runs unchanged against a real cluster.
librdkafka-only properties (``kafka.extra``) cannot be translated; they are logged and ignored.
"""

from __future__ import annotations

from typing import Any

from infra.errors import ConfigError
from infra.logging import get_logger
from infra.settings import KafkaSettings
from pipeline.settings import PipelineSettings

log = get_logger(__name__)

TABLE_NAME = "stage-state"
# Room for headers and record overhead on top of the largest value the stage writes.
_REQUEST_OVERHEAD = 64 * 1024


def changelog_topic(settings: PipelineSettings) -> str:
    """The changelog topic of the stage's table (faust's naming: ``<app id>-<table>-changelog``)."""
    return f"{settings.app_id}-{TABLE_NAME}-changelog"


def broker_urls(kafka: KafkaSettings) -> list[str]:
    servers = kafka.resolved_bootstrap()
    if not servers:
        kafka.client_config()  # raises the ConfigError that explains what to set
    return [f"aiokafka://{s.strip()}" for s in servers.split(",") if s.strip()]


def credentials(kafka: KafkaSettings) -> Any:
    """faust credentials for ``kafka.security_protocol`` (None for PLAINTEXT)."""
    import faust
    from aiokafka.helpers import create_ssl_context

    protocol = kafka.security_protocol
    if kafka.extra:
        log.warning("librdkafka-only settings are ignored by the faust stage", keys=sorted(kafka.extra))
    if protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        ssl_context = create_ssl_context(
            cafile=str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None,
            certfile=str(kafka.ssl_certificate_location) if kafka.ssl_certificate_location else None,
            keyfile=str(kafka.ssl_key_location) if kafka.ssl_key_location else None,
            password=kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    mechanism = kafka.sasl_mechanism or "PLAIN"
    if mechanism == "GSSAPI":
        return faust.GSSAPICredentials(ssl_context=ssl_context)
    if mechanism == "OAUTHBEARER":
        raise ConfigError("kafka.sasl_mechanism OAUTHBEARER is not supported by the faust stage")
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
        ssl_context=ssl_context,
        mechanism=mechanism,
    )


def limit_fetch_wait(max_wait_ms: int) -> None:
    """Make faust's aiokafka consumer long-poll at most ``max_wait_ms`` per fetch.

    faust 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. aiokafka keeps one
    fetch in flight per broker, so while it long-polls the idle partitions the busy one cannot be
    fetched: the stream stalls ~1.3 s at a time (measured: 4,000 documents took 10 s with 1,500 ms
    and 2.7 s with 100 ms). We set the aiokafka consumer's attribute before it starts; applied once,
    idempotent. Pinned versions: faust-streaming 0.15.3, aiokafka 0.14.0 (pyproject.toml).
    """
    from faust.transport.drivers import aiokafka as driver

    cls: Any = driver.AIOKafkaConsumerThread
    original = getattr(cls, "_mbc_create_worker_consumer", cls._create_worker_consumer)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        if hasattr(consumer, "_fetch_max_wait_ms"):
            consumer._fetch_max_wait_ms = max_wait_ms
        else:  # a newer aiokafka renamed it: keep working, slower
            log.warning(
                "cannot shorten the consumer's fetch wait; aiokafka changed",
                aiokafka=driver.aiokafka.__version__,
            )
        return consumer

    cls._mbc_create_worker_consumer = original
    cls._create_worker_consumer = create_worker_consumer


def complete_buffer_flush() -> None:
    """Make faust's flush-before-commit wait for *every* buffered message (tables write through it).

    faust 0.15.3 ``ProducerBuffer.flush`` returns as soon as no message was sent for 0.1 s, even with
    messages still buffered, and a message its sender task has taken off the queue but not yet
    handed to aiokafka counts as neither buffered nor in aiokafka. Either way an offset could be
    committed before the table changes of its message were written — the one thing the exact books
    rely on (stage/logic.py). Patched: flush until the buffer is empty and nothing is in transit.
    Applied once, idempotent.
    """
    import asyncio

    from faust.transport import producer as module

    cls: Any = module.ProducerBuffer
    if getattr(cls, "_mbc_complete_flush", False):
        return
    send_pending = cls._send_pending

    async def _send_pending(self: Any, fut: Any) -> None:
        self._mbc_in_transit = getattr(self, "_mbc_in_transit", 0) + 1
        try:
            await send_pending(self, fut)
        finally:
            self._mbc_in_transit -= 1

    async def flush(self: Any) -> None:
        while self.size or getattr(self, "_mbc_in_transit", 0):
            if self.size:
                await self.flush_atmost(None)  # raises if the producer is no longer running
            else:
                await asyncio.sleep(0.001)

    cls._send_pending = _send_pending
    cls.flush = flush
    cls._mbc_complete_flush = True


def app_config(settings: PipelineSettings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` (besides the id)."""
    largest = max(settings.max_message_bytes, settings.dlq_max_bytes) + _REQUEST_OVERHEAD
    return {
        "broker": broker_urls(settings.kafka),
        "broker_credentials": credentials(settings.kafka),
        # The mock broker has no CreateTopics; the leader topic is not needed (docs/DESIGN.md §4).
        "topic_allow_declare": settings.declare_topics,
        "topic_disable_leader": True,
        "topic_partitions": settings.topics.partitions,
        "topic_replication_factor": settings.topics.replication_factor,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_rebalance_timeout": settings.rebalance_timeout_s,
        "broker_heartbeat_interval": settings.heartbeat_interval_s,
        "broker_commit_interval": settings.commit_interval_s,
        "consumer_auto_offset_reset": "earliest",
        "consumer_max_fetch_size": max(4 * 1024 * 1024, 2 * largest),
        "producer_max_request_size": largest,
        "producer_max_batch_size": min(largest, 512 * 1024),
        "producer_acks": -1,
        "processing_guarantee": "at_least_once",
        "store": "memory://",
        "datadir": str(settings.state_dir / "faust"),
        "web_enabled": False,
        "autodiscover": False,
        "table_standby_replicas": 0,
    }
