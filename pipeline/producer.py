"""Publishing documents to the raw topic: an idempotent confluent-kafka producer that counts
delivery reports, and a stop flag for SIGINT/SIGTERM.

Partitioning: with ``partition_by = "source"`` (the default) every document of one source goes to
the same partition (CRC-32 of the source modulo the partition count), so a source's documents stay
in publication order and the stage can detect duplicates within a source exactly. The key is
always the document id.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from infra.errors import BrokerError
from infra.kafka import confluent_config, ensure_topics
from infra.logging import get_logger
from pipeline.events import Document
from pipeline.settings import ProducerSettings

log = get_logger(__name__)

DeliveryCallback = Callable[[Document, KafkaError | None], None]


def partition_for_source(source: str, partitions: int) -> int:
    """The partition all documents of ``source`` go to (stable across processes and versions)."""
    return zlib.crc32(source.encode()) % partitions


class DocumentProducer:
    """Sends :class:`Document` s to the raw topic and keeps count of what was confirmed or lost."""

    def __init__(self, settings: ProducerSettings, topic: str | None = None) -> None:
        self.settings = settings
        self.topic = topic or settings.topics.raw
        ensure_topics(settings.kafka, settings.topics, sorted({self.topic, settings.topics.raw}))
        self._producer = Producer(
            confluent_config(
                settings.kafka,
                **{
                    "enable.idempotence": True,
                    "linger.ms": settings.linger_ms,
                    "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
                    "message.max.bytes": settings.max_message_bytes,
                },
            )
        )
        self.partitions = self._partition_count()
        self.delivered = 0
        self.failed = 0
        self.sent = 0

    def _partition_count(self) -> int:
        try:
            md = self._producer.list_topics(self.topic, timeout=15)
        except KafkaException as e:
            raise BrokerError(
                f"cannot reach Kafka at {self.settings.kafka.resolved_bootstrap()}: {e.args[0].str()}"
            ) from e
        meta = md.topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise BrokerError(f"topic {self.topic} is not available: {meta.error if meta else 'unknown'}")
        return len(meta.partitions)

    def send(self, doc: Document, on_delivery: DeliveryCallback | None = None) -> None:
        """Queue ``doc``; ``on_delivery(doc, error)`` runs from :meth:`poll`/:meth:`flush`."""

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                log.error("delivery failed", id=doc.id, source=doc.source, error=err.str())
            if on_delivery is not None:
                on_delivery(doc, err)

        kwargs: dict[str, Any] = {"key": doc.key, "value": doc.to_json(), "on_delivery": report}
        if self.settings.partition_by == "source":
            kwargs["partition"] = partition_for_source(doc.source, self.partitions)
        while True:
            try:
                self._producer.produce(self.topic, **kwargs)
                break
            except BufferError:  # local queue full: serve delivery reports, then try again
                self._producer.poll(0.1)
        self.sent += 1

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports; returns how many were served."""
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every queued message's delivery report; returns how many are still pending."""
        return int(self._producer.flush(self.settings.delivery_timeout_s if timeout is None else timeout))

    def close(self) -> int:
        """Flush and return how many documents were lost (failed or never confirmed)."""
        pending = self.flush()
        lost = self.failed + pending
        log.info(
            "producer closed", sent=self.sent, delivered=self.delivered, failed=self.failed, pending=pending
        )
        return lost
