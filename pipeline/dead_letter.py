"""The dead-letter record: one format for every component that refuses a message.

A dead letter's key is the original key and its value the original bytes (the first
``max_bytes`` of them when a limit is given), so it can be inspected and replayed as it was. Its
headers say where it came from and why it was refused::

    mbc-source-topic, mbc-source-partition, mbc-source-offset   where the original was read
    mbc-source-timestamp                                         its record time (ms), when known
    mbc-reason                                                   a short machine-readable reason
    mbc-detail                                                   a human-readable detail (<= 1000 bytes)
    mbc-stage                                                    who refused it: pipeline | learner
    mbc-original-size, mbc-original-sha256                       of the complete original value
    mbc-truncated                                                1 if the value was cut to max_bytes

Used by the faust stage (:mod:`pipeline.stage.app`) and the learner worker
(:mod:`learner.worker.run`); ``mbc tail`` and the demo read these headers. Standard library only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_DETAIL_BYTES = 1000


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """The Kafka message to produce to the dead-letter topic."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


def provenance_headers(
    topic: str, partition: int, offset: int, timestamp_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """Where a message derived from (topic, partition, offset) came from."""
    headers = [
        ("mbc-source-topic", topic.encode()),
        ("mbc-source-partition", str(partition).encode()),
        ("mbc-source-offset", str(offset).encode()),
    ]
    if timestamp_ms is not None:
        headers.append(("mbc-source-timestamp", str(timestamp_ms).encode()))
    return headers


def dead_letter_record(
    *,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str,
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None = None,
    max_bytes: int | None = None,
) -> DeadLetterRecord:
    """The dead letter of the message at (topic, partition, offset) refused by ``stage``."""
    original = value or b""
    truncated = max_bytes is not None and len(original) > max_bytes
    headers = [
        *provenance_headers(topic, partition, offset, timestamp_ms),
        ("mbc-reason", reason.encode()),
        ("mbc-detail", detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]),
        ("mbc-stage", stage.encode()),
        ("mbc-original-size", str(len(original)).encode()),
        ("mbc-original-sha256", hashlib.sha256(original).hexdigest().encode()),
        ("mbc-truncated", b"1" if truncated else b"0"),
    ]
    return DeadLetterRecord(key, original[:max_bytes] if truncated else original, headers)
