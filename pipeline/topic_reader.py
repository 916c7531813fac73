"""Reading a topic without a consumer group: everything up to now, or following new messages.

Used by `mbc topics tail`, `mbc pipeline stats` and the tests; nothing is committed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

from infra.errors import BrokerError
from infra.kafka import cluster_metadata, confluent_config
from infra.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class Record:
    """One message as read from Kafka."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def header(self, name: str) -> str | None:
        raw = self.headers.get(name)
        return raw.decode("utf-8", "replace") if raw is not None else None


def _consumer(kafka: KafkaSettings) -> Consumer:
    return Consumer(
        confluent_config(
            kafka,
            **{
                "group.id": f"mbc-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.message.max.bytes": 16 * 1024 * 1024,
            },
        )
    )


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    """Partition ids of ``topic``; asks for all topics so that reading never auto-creates one."""
    try:
        md = consumer.list_topics(timeout=15)
    except KafkaException as e:
        raise BrokerError(f"cannot reach Kafka: {e.args[0].str()}") from e
    meta = md.topics.get(topic)
    if meta is None:
        raise BrokerError(f"topic {topic} does not exist")
    if meta.error is not None:
        raise BrokerError(f"topic {topic} is not available: {meta.error}")
    return sorted(meta.partitions)


def watermarks(kafka: KafkaSettings, topic: str) -> dict[int, tuple[int, int]]:
    """(low, high) offsets of every partition of ``topic``."""
    consumer = _consumer(kafka)
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in partitions_of(consumer, topic)
        }
    finally:
        consumer.close()


def _headers(raw: Any) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k, v in raw or []:
        out[str(k)] = v if isinstance(v, bytes) else str(v or "").encode()
    return out


def record_from_message(msg: Message) -> Record:
    """A :class:`Record` from a confluent-kafka message (without an error)."""
    ts_type, ts = msg.timestamp()
    return Record(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        timestamp_ms=ts if ts_type != TIMESTAMP_NOT_AVAILABLE else 0,
        key=msg.key(),
        value=msg.value(),
        headers=_headers(msg.headers()),
    )


def read(
    kafka: KafkaSettings,
    topic: str,
    *,
    from_beginning: bool = True,
    follow: bool = False,
    limit: int | None = None,
    timeout: float = 60.0,
) -> Iterator[Record]:
    """Messages of ``topic``: from the beginning (or from now), up to the end as of the call
    unless ``follow``; at most ``limit``. Raises BrokerError if the end is not reached in time, or
    at once (one line, no consumer log noise) if Kafka cannot be reached."""
    cluster_metadata(kafka)
    consumer = _consumer(kafka)
    try:
        parts = partitions_of(consumer, topic)
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}
        ends = {p: high for p, (_, high) in marks.items()}
        if from_beginning:
            # the log start, not offset 0: retention may have moved it (a fetch below it is reset to the end)
            consumer.assign([TopicPartition(topic, p, max(low, 0)) for p, (low, _) in marks.items()])
        else:
            consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
            ends = dict.fromkeys(parts, 0)
        remaining = {p for p in parts if ends[p] > max(marks[p][0], 0)} if from_beginning else set()
        if not remaining and not follow:
            return
        seen = 0
        deadline = time.monotonic() + timeout
        while follow or remaining:
            if not follow and time.monotonic() > deadline:
                raise BrokerError(f"timed out reading {topic}; still missing partitions {sorted(remaining)}")
            msg = consumer.poll(0.2)
            if msg is None:
                if remaining:  # a partition whose position was reset past its end has nothing left to give
                    at = consumer.position([TopicPartition(topic, p) for p in remaining])
                    remaining -= {tp.partition for tp in at if tp.offset >= ends[tp.partition]}
                continue
            if msg.error():
                continue
            rec = record_from_message(msg)
            if rec.offset >= ends.get(rec.partition, 0) - 1:
                remaining.discard(rec.partition)
            yield rec
            seen += 1
            if limit is not None and seen >= limit:
                return
    finally:
        consumer.close()
