"""One batch of Kafka messages -> documents with packed codes, dead letters and offsets.

Pure preparation: nothing here writes anywhere. :class:`learner.worker.step.StoreStep` writes the
result (dead letters first, then documents + offsets in one store transaction, then the Kafka
commit) and keeps it for retries, so a batch is encoded once however long the store is away.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import torch
from torch import Tensor

from learner.inference.encode import PoisonDocument, TextEncoder
from learner.worker.online_codebook import OnlineCodebook
from memory_store.codec import CODE_FORMAT_VERSION, pack_codes_batch
from memory_store.errors import InvalidRecord
from memory_store.records import ConsumedOffset, DocumentRecord, SourcePosition
from memory_store.text_sketch import TextSketch
from pipeline.dead_letter import DeadLetterRecord, dead_letter_record
from pipeline.events import Document, Rejection, validate

STORE_REJECTED = "store_rejected"  # mbc-reason of a document the memory store refused


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

    def record(self) -> DeadLetterRecord:
        """The dead-letter message: original key and bytes, headers of :mod:`pipeline.dead_letter`."""
        m = self.message
        return dead_letter_record(
            key=m.key,
            value=m.value,
            reason=self.reason,
            detail=self.detail,
            stage="learner",
            topic=m.topic,
            partition=m.partition,
            offset=m.offset,
            timestamp_ms=int(m.timestamp.timestamp() * 1000) if m.timestamp is not None else None,
        )


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
    messages: list[RawMessage] = field(default_factory=list)  # the message of each record
    tokenize_s: float = 0.0  # the part of ``encode_s`` spent decoding and tokenizing

    @property
    def size(self) -> int:
        return len(self.records) + len(self.dead_letters)

    def part(self, indices: Sequence[int]) -> PreparedBatch:
        """The records at ``indices`` alone: no dead letters, no offsets (a probe of the store)."""
        return replace(
            self,
            records=[self.records[i] for i in indices],
            messages=[self.messages[i] for i in indices] if self.messages else [],
            dead_letters=[],
            offsets=[],
            z=None,
            codes=None,
            sq_error=None,
        )

    def reject(self, refused: Mapping[int, str]) -> None:
        """Move the records at the keys of ``refused`` (index -> the store's reason) to the dead
        letters, so that the rest of the batch and its offsets can be stored."""
        keep = [i for i in range(len(self.records)) if i not in refused]
        for i, detail in sorted(refused.items()):
            self.dead_letters.append(DeadLetter(self.messages[i], STORE_REJECTED, detail))
        self.records = [self.records[i] for i in keep]
        self.messages = [self.messages[i] for i in keep]
        if self.z is not None and self.codes is not None and self.sq_error is not None:
            index = torch.tensor(keep, dtype=torch.long, device=self.z.device)
            self.z, self.codes, self.sq_error = self.z[index], self.codes[index], self.sq_error[index]
            if not keep:
                self.z = self.codes = self.sq_error = None


class DeadLetterUndelivered(Exception):
    """The dead-letter topic did not confirm delivery (broker away): retry later, never skip."""


def find_refused(batch: PreparedBatch, write: Callable[[PreparedBatch], object]) -> dict[int, str]:
    """The records the store refuses (index -> reason), found by writing parts of the batch.

    A part that the store refuses with :class:`InvalidRecord` is split in halves until the culprits
    are single records (when the store names the culprit, it is set aside at once); the parts it
    accepts are written — harmless, since writes are idempotent by id and the batch is written
    again whole, with its offsets, afterwards. Errors other than InvalidRecord propagate.
    """
    refused: dict[int, str] = {}

    def visit(indices: list[int]) -> None:
        if not indices:
            return
        try:
            write(batch.part(indices))
        except InvalidRecord as e:
            named = [i for i in indices if getattr(batch.records[i], "id", None) == e.doc_id]
            if len(indices) == 1 or (named and e.doc_id is not None):
                culprits = named if e.doc_id is not None and named else indices
                refused.update({i: str(e) for i in culprits})
                visit([i for i in indices if i not in culprits])
                return
            mid = len(indices) // 2
            visit(indices[:mid])
            visit(indices[mid:])

    visit(list(range(len(batch.records))))
    return refused


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


@dataclass
class Tokenized:
    """A batch after the CPU half of :func:`prepare`: decoded, validated and tokenized."""

    batch_id: str
    good: list[tuple[RawMessage, Document]]
    dead_letters: list[DeadLetter]
    offsets: list[ConsumedOffset]
    tokens: tuple[Tensor, Tensor] | None  # ids (N, T), mask (N, T) of ``good``; None: tokenize in encode
    tokenize_s: float = 0.0
    sketches: dict[str, bytes] | None = None  # doc id -> its TextSketch (float16 bytes); None: none kept


def tokenize(
    messages: Sequence[RawMessage],
    committable: Mapping[tuple[str, int], int],
    group: str,
    encoder: TextEncoder,
    sketch: TextSketch | None = None,
) -> Tokenized:
    """Decode and tokenize a batch (CPU only; pinned host memory when the encoder is on CUDA); with
    ``sketch``, also each document's text sketch."""
    t0 = time.perf_counter()
    good, dead = decode(messages)
    tokens = None
    if good:
        try:
            ids, mask = encoder.tokenize([d.text for _, d in good])  # (N, T), (N, T)
            if encoder.device.type == "cuda":
                ids, mask = ids.pin_memory(), mask.pin_memory()
            tokens = (ids, mask)
        except Exception:  # a poison document: encode() finds which, one by one
            tokens = None
    offsets = next_offsets(group, committable)
    sketches = None
    if sketch is not None and good:
        rows = sketch.documents([d.text for _, d in good])  # (N, H) float16
        sketches = {d.id: row.tobytes() for (_, d), row in zip(good, rows, strict=True)}
    return Tokenized(uuid.uuid4().hex[:12], good, dead, offsets, tokens, time.perf_counter() - t0, sketches)


def encode(batch: Tokenized, encoder: TextEncoder, codebook: OnlineCodebook) -> PreparedBatch:
    """Amortize and quantize a tokenized batch; poison documents become dead letters."""
    good, dead = batch.good, list(batch.dead_letters)
    t0 = time.perf_counter()
    z = None
    if good:
        try:
            if batch.tokens is None:
                raise PoisonDocument("the batch did not tokenize")
            z = encoder.encode_tokens(*batch.tokens)  # (N, K, D)
        except Exception:
            good_before = len(good)
            good, poisoned = _split_poison(good, encoder)
            if not good and good_before > 1:
                raise  # every document fails alone too: the model or device is broken, not the data
            dead += poisoned
            z = encoder.encode([d.text for _, d in good]) if good else None
    records: list[DocumentRecord] = []
    sources: list[RawMessage] = []
    codes = err = None
    if z is not None:
        version, codes, err = codebook.quantize_current(z)  # (N, K·G), (N, K·G)
        blobs = pack_codes_batch(  # C is the same in every version; G is the version's own
            codes.cpu().numpy(),
            codebook.num_codes,
            groups=codebook.groups_of(version),
            code_format=CODE_FORMAT_VERSION,
        )
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
                    text_sketch=batch.sketches.get(d.id) if batch.sketches else None,
                )
            )
            sources.append(m)
    encode_s = batch.tokenize_s + time.perf_counter() - t0
    return PreparedBatch(
        batch.batch_id, records, dead, batch.offsets, z, codes, err, encode_s, sources, batch.tokenize_s
    )


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
