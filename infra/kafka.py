"""Kafka client helpers that work unchanged against a real cluster and the embedded broker."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from infra.errors import BrokerError
from infra.logging import get_logger
from infra.settings import KafkaSettings, TopicSettings

log = get_logger(__name__)


def librdkafka_logger() -> logging.Logger:
    """A stdlib logger that librdkafka's own log lines go to (so they carry the service name)."""
    return logging.getLogger("librdkafka")


def confluent_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Configuration for a confluent-kafka client: ``kafka.client_config`` plus our log routing."""
    return kafka.client_config(logger=librdkafka_logger(), **overrides)


def cluster_metadata(kafka: KafkaSettings, timeout: float = 10.0) -> Any:
    """The cluster's metadata (brokers, topics); :class:`BrokerError` in one line when Kafka cannot
    be reached within ``timeout`` seconds, :class:`ConfigError` when no broker is configured."""
    return _metadata(AdminClient(confluent_config(kafka)), kafka, timeout)


def _metadata(admin: AdminClient, kafka: KafkaSettings, timeout: float) -> Any:
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as e:
        raise BrokerError(f"cannot reach Kafka at {kafka.resolved_bootstrap()}: {e.args[0].str()}") from e


def ensure_topics(
    kafka: KafkaSettings, topics: TopicSettings, names: list[str] | None = None, timeout: float = 5.0
) -> str:
    """Create ``names`` (default: raw, clean, dlq) with the configured partitions and replication.

    Returns ``"created"`` when the admin API handled it, ``"auto"`` when the broker cannot create
    topics (librdkafka's mock cluster has no controller and no CreateTopics) and topics will be
    auto-created on first use instead. That fallback is logged.
    """
    names = names or [topics.raw, topics.clean, topics.dlq]
    admin = AdminClient(confluent_config(kafka))
    md = _metadata(admin, kafka, 10.0)
    missing = [n for n in names if n not in md.topics]
    if not missing:
        return "created"
    if md.controller_id < 0 or (md.cluster_id or "").startswith("mockCluster"):
        # librdkafka's mock cluster names a controller but never answers CreateTopics.
        log.warning("broker cannot create topics (mock cluster); relying on auto-creation", topics=missing)
        for name in missing:  # a metadata request for a topic auto-creates it
            try:
                admin.list_topics(topic=name, timeout=5)
            except KafkaException:
                pass
        return "auto"
    futures = admin.create_topics(
        [NewTopic(n, topics.partitions, topics.replication_factor) for n in missing], request_timeout=timeout
    )
    failed: dict[str, str] = {}
    for name, fut in futures.items():
        try:
            fut.result()
            log.info("created topic", topic=name, partitions=topics.partitions)
        except KafkaException as e:
            err: Any = e.args[0]
            if err.name() != "TOPIC_ALREADY_EXISTS":
                failed[name] = err.str()
    if failed:
        log.warning(
            "broker did not create topics; relying on auto-creation",
            topics=sorted(failed),
            error=next(iter(failed.values())),
        )
        return "auto"
    return "created"
