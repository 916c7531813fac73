"""Typed values that go into and come out of the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from memory_store.codec import CODE_FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a document was read from: a Kafka topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """One document to store: metadata plus its K codes packed with :func:`codec.pack_codes` in
    ``code_format`` (with the C and G of its codebook version).

    ``published_at`` is the time slices select on; naive datetimes are taken as UTC.
    ``ingested_at`` defaults to the time of the write. ``text_sketch``: the text's
    :class:`~memory_store.text_sketch.TextSketch` as float16 bytes (what text retrieval finds it by).
    """

    id: str
    source: str
    published_at: datetime
    content_sha256: str
    k: int
    codebook_version: int
    codes: bytes
    code_format: int = CODE_FORMAT_VERSION
    url: str | None = None
    title: str | None = None
    position: SourcePosition | None = None
    ingested_at: datetime | None = None
    text_sketch: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConsumedOffset:
    """After this write, ``group`` resumes ``topic``/``partition`` at ``next_offset``."""

    group: str
    topic: str
    partition: int
    next_offset: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: ids newly stored, ids already present (left unchanged), offsets stored."""

    inserted: tuple[str, ...]
    duplicates: tuple[str, ...]
    offsets: int

    @property
    def inserted_count(self) -> int:
        return len(self.inserted)


class CodeCount(NamedTuple):
    """How many stored codes (over the selected documents) are ``code`` of ``codebook_version``."""

    codebook_version: int
    code: int
    n: int


@dataclass(frozen=True, slots=True)
class CodebookHealth:
    """Health figures of a codebook version, as the learner measured them."""

    perplexity: float | None = None
    resets: int | None = None
    dead_codes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CodebookInfo:
    """A codebook version without its vectors."""

    version: int
    parent_version: int | None
    num_codes: int
    dim: int
    groups: int  # G: product-quantization groups of num_codes / G codes (what code format 2 packs by)
    dtype: str
    vectors_sha256: str
    created_at: datetime
    health: CodebookHealth


@dataclass(frozen=True, slots=True)
class StoredCodebook:
    """A codebook version with its (C, D) float32 vectors."""

    info: CodebookInfo
    vectors: npt.NDArray[np.float32]  # (C, D)


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A stored document: its metadata, packed codes and the decoded indices."""

    id: str
    source: str
    url: str | None
    title: str | None
    published_at: datetime
    ingested_at: datetime
    content_sha256: str
    k: int
    codebook_version: int
    code_format: int
    codes: bytes
    indices: tuple[int, ...]
    position: SourcePosition | None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Size of the memory and of what an uncompressed (float32) memory would need."""

    backend: str
    schema_revision: str | None
    documents: int
    sources: int
    codebook_versions: int
    code_bytes: int
    float_equivalent_bytes: int
    first_ingested_at: datetime | None
    last_ingested_at: datetime | None

    @property
    def compression_ratio(self) -> float | None:
        return self.float_equivalent_bytes / self.code_bytes if self.code_bytes else None


@dataclass(frozen=True, slots=True)
class RetrievedDocument:
    """A document retrieval found for a question: what a citation names, its codes and its score."""

    id: str
    source: str
    url: str | None
    title: str | None
    published_at: datetime
    codebook_version: int
    indices: tuple[int, ...]  # its K stored codes
    score: float  # inner product of its key with the question's query vector
