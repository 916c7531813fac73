"""One batch of Kafka messages -> documents with packed codes, dead letters and offsets.

Pure preparation: nothing here writes anywhere. :class:`learner.worker.step.StoreStep` writes the
result (dead letters first, then documents + offsets in one store transaction, then the Kafka
commit) and keeps it for retries, so a batch is encoded once however long the store is away.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from torch import Tensor

from learner.inference.encode import PoisonDocument, TextEncoder
from learner.worker.online_codebook import OnlineCodebook
from memory_store.codec import CODE_FORMAT_VERSION, pack_codes_batch
from memory_store.records import ConsumedOffset, DocumentRecord, SourcePosition
from pipeline.events import Document, Rejection, validate


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A consumed Kafka message, detached from the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the learner cannot take, with why; sent to the dead-letter topic."""

    message: RawMessage
    reason: str
    detail: str

    def headers(self) -> list[tuple[str, bytes]]:
        original = self.message.value or b""
        return [
            ("mbc-reason", self.reason.encode()),
            ("mbc-detail", self.detail.encode()[:1000]),
            ("mbc-stage", b"learner"),
            ("mbc-original-size", str(len(original)).encode()),
            ("mbc-original-sha256", hashlib.sha256(original).hexdigest().encode()),
            ("mbc-source-topic", self.message.topic.encode()),
            ("mbc-source-partition", str(self.message.partition).encode()),
            ("mbc-source-offset", str(self.message.offset).encode()),
        ]


@dataclass
class PreparedBatch:
    """What a batch becomes before anything is written."""

    batch_id: str
    records: list[DocumentRecord]
    dead_letters: list[DeadLetter]
    offsets: list[ConsumedOffset]
    z: Tensor | None  # (N, K, D) context vectors of ``records``, for codebook maintenance
    codes: Tensor | None  # (N, K)
    sq_error: Tensor | None  # (N, K)
    encode_s: float = 0.0

    @property
    def size(self) -> int:
        return len(self.records) + len(self.dead_letters)


def next_offsets(group: str, committable: Mapping[tuple[str, int], int]) -> list[ConsumedOffset]:
    """Store form of arroyo's committable offsets ({(topic, partition): next offset})."""
    return [ConsumedOffset(group, t, p, o) for (t, p), o in sorted(committable.items())]


def decode(messages: Sequence[RawMessage]) -> tuple[list[tuple[RawMessage, Document]], list[DeadLetter]]:
    """Parse and re-validate each message with the pipeline's schema (the one module that owns it)."""
    good: list[tuple[RawMessage, Document]] = []
    dead: list[DeadLetter] = []
    for m in messages:
        result = validate(m.value, key=m.key)
        if isinstance(result, Rejection):
            dead.append(DeadLetter(m, result.reason.value, result.detail))
        else:
            good.append((m, result))
    return good, dead


def prepare(
    messages: Sequence[RawMessage],
    committable: Mapping[tuple[str, int], int],
    group: str,
    encoder: TextEncoder,
    codebook: OnlineCodebook,
) -> PreparedBatch:
    """Decode, encode (tokenize + amortize) and quantize a batch; poison documents become dead letters."""
    import time

    batch_id = uuid.uuid4().hex[:12]
    good, dead = decode(messages)
    t0 = time.perf_counter()
    z = None
    if good:
        try:
            z = encoder.encode([d.text for _, d in good])  # (N, K, D)
        except Exception:
            good_before = len(good)
            good, poisoned = _split_poison(good, encoder)
            if not good and good_before > 1:
                raise  # every document fails alone too: the model or device is broken, not the data
            dead += poisoned
            z = encoder.encode([d.text for _, d in good]) if good else None
    encode_s = time.perf_counter() - t0
    records: list[DocumentRecord] = []
    codes = err = None
    if z is not None:
        version = codebook.follow()
        codes, err = codebook.quantize(z)  # (N, K), (N, K)
        blobs = pack_codes_batch(codes.cpu().numpy(), int(codebook.state.vectors.shape[0]))  # type: ignore[union-attr]
        for (m, d), blob in zip(good, blobs, strict=True):
            records.append(
                DocumentRecord(
                    id=d.id,
                    source=d.source,
                    published_at=d.published_at or d.fetched_at,
                    content_sha256=d.content_sha256,
                    k=int(codes.shape[1]),
                    codebook_version=version,
                    codes=blob,
                    code_format=CODE_FORMAT_VERSION,
                    url=d.url,
                    title=d.title or None,
                    position=SourcePosition(m.topic, m.partition, m.offset),
                )
            )
    return PreparedBatch(batch_id, records, dead, next_offsets(group, committable), z, codes, err, encode_s)


def _split_poison(
    good: list[tuple[RawMessage, Document]], encoder: TextEncoder
) -> tuple[list[tuple[RawMessage, Document]], list[DeadLetter]]:
    """Find the documents that make encoding fail, one by one."""
    keep: list[tuple[RawMessage, Document]] = []
    dead: list[DeadLetter] = []
    for m, d in good:
        try:
            encoder.encode([d.text])
            keep.append((m, d))
        except PoisonDocument as e:
            dead.append(DeadLetter(m, "unencodable", str(e)))
        except Exception as e:  # the model itself failed on this text
            dead.append(DeadLetter(m, "unencodable", f"{type(e).__name__}: {e}"))
    return keep, dead
