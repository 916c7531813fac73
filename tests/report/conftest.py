"""A store with documents over three days and three codebook versions with health figures."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from memory_store.records import CodebookHealth, DocumentRecord
from memory_store.store import MemoryStore
from tests.memory_store.helpers import codebook, doc

T0 = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)
SOURCES = ("reuters", "bbc", "arxiv")
# (C, D, K, documents, health) per version, oldest first; v1 has no quantization error recorded.
VERSIONS = (
    (512, 16, 12, 50, CodebookHealth(perplexity=310.4, resets=0, dead_codes=12)),
    (
        512,
        16,
        12,
        40,
        CodebookHealth(
            perplexity=402.7,
            resets=7,
            dead_codes=3,
            extra={"mean_quantization_error": 0.0421, "observed_docs": 50},
        ),
    ),
    (
        256,
        8,
        8,
        30,
        CodebookHealth(
            perplexity=190.2,
            resets=2,
            dead_codes=1,
            extra={"mean_quantization_error": 0.0315, "observed_docs": 40},
        ),
    ),
)
DELETED = ("doc-3", "doc-77")
RETRACTED = "retracted"  # doc-77's source: after the delete it has no documents and leaves the report


@dataclass(frozen=True)
class Written:
    """What the test wrote: the documents still stored with their code indices, each version's
    (C, D) and health, and the version numbers oldest first."""

    docs: list[DocumentRecord]
    codes: dict[str, list[int]]
    shapes: dict[int, tuple[int, int]]
    health: dict[int, CodebookHealth]
    versions: list[int]


def fill(store: MemoryStore) -> Written:
    """Three linear codebook versions; 120 documents ingested every 37 minutes (about 3 days), 2 deleted."""
    rng = np.random.default_rng(7)
    versions: list[int] = []
    shapes: dict[int, tuple[int, int]] = {}
    docs: list[DocumentRecord] = []
    indices: dict[str, list[int]] = {}
    healths: dict[int, CodebookHealth] = {}
    i = 0
    for c, d, k, n, health in VERSIONS:
        parent = versions[-1] if versions else None
        v = store.add_codebook_version(codebook(c, d, seed=len(versions)), parent=parent, expect_latest=True)
        store.update_codebook_health(v, health)
        versions.append(v)
        shapes[v] = (c, d)
        healths[v] = health
        for _ in range(n):
            ingested = T0 + timedelta(minutes=37 * i)
            codes = rng.integers(0, c // 3, size=k).tolist()  # skewed: not every code is used
            indices[f"doc-{i}"] = codes
            docs.append(
                doc(
                    f"doc-{i}",
                    codes,
                    v,
                    c,
                    source=RETRACTED if i == 77 else SOURCES[i % 3],
                    published_at=ingested - timedelta(hours=2),
                    ingested_at=ingested,
                )
            )
            i += 1
    for start in range(0, len(docs), 25):
        store.write_batch(docs[start : start + 25])
    assert store.delete_documents(list(DELETED)) == list(DELETED)
    kept = [d for d in docs if d.id not in DELETED]
    return Written(kept, {d.id: indices[d.id] for d in kept}, shapes, healths, versions)


@pytest.fixture
def filled(db_url: str, tmp_path: Path) -> Iterator[tuple[MemoryStore, Written]]:
    store = MemoryStore(db_url, auto_migrate=True, index_dir=tmp_path / "faiss")
    try:
        yield store, fill(store)
    finally:
        store.close()
