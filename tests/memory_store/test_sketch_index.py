"""Text retrieval from the store (``MemoryStore.retrieve_by_text``): documents written with their
text sketch are found by a question's words, within the slice, never after deletion, the same after
a restart; the index's bucket counts follow every add and delete."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from memory_store.errors import InvalidRecord
from memory_store.store import MemoryStore
from memory_store.text_sketch import TextSketch, bucket_counts
from tests.memory_store.helpers import T0, random_docs

TOPICS = [
    "copper prices rose in chile after the strike at the escondida mine",
    "the central bank raised interest rates to fight inflation",
    "wheat harvest in kansas hit by drought and heat",
    "oil tanker traffic through the strait slowed after the storm",
    "coffee exports from brazil fell as frost damaged the crop",
    "the airline ordered forty jets from the european maker",
]


def _texts(n: int) -> list[str]:
    return [f"{TOPICS[i % len(TOPICS)]} report number {i}" for i in range(n)]


def _write(store: MemoryStore, version: int, n: int = 24, sketched: int | None = None) -> list[str]:
    """``n`` documents, the first ``sketched`` (default all) with the sketch of their text; returns the texts."""
    texts = _texts(n)
    rows = TextSketch().documents(texts)
    docs = [
        dataclasses.replace(d, text_sketch=rows[i].tobytes() if sketched is None or i < sketched else None)
        for i, d in enumerate(random_docs(n, version, seed=3))
    ]
    store.write_batch(docs)
    return texts


def test_a_question_finds_the_documents_that_share_its_words(store: MemoryStore, version: int) -> None:
    _write(store, version)
    found = store.retrieve_by_text("why did coffee exports from brazil fall", 4)
    assert {d.id for d in found} == {"d4", "d10", "d16", "d22"}  # every coffee report, and only those
    assert len(found[0].indices) == 12 and found[0].title == f"title of {found[0].id}"
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True) and found[0].score > 0
    one = store.retrieve_by_text("coffee report number 16", 1)
    assert [d.id for d in one] == ["d16"]


def test_the_slice_and_deletions_hold_and_a_restart_rebuilds_the_same_ranking(
    store: MemoryStore, version: int, db_url: str, tmp_path: Path
) -> None:
    _write(store, version)
    q = "interest rates and inflation at the central bank"
    before = [d.id for d in store.retrieve_by_text(q, 6)]
    assert set(before[:4]) == {"d1", "d7", "d13", "d19"}
    for d in store.retrieve_by_text(q, 4, source="src1"):
        assert d.source == "src1"
    late = T0 + timedelta(hours=36)
    assert all(d.published_at >= late for d in store.retrieve_by_text(q, 4, since=late))
    assert store.delete_document(before[0])
    after = [d.id for d in store.retrieve_by_text(q, 6)]
    assert before[0] not in after  # at once: the database confirms every candidate
    again = MemoryStore(db_url, index_dir=tmp_path / "faiss2")
    try:
        assert [d.id for d in again.retrieve_by_text(q, 6)] == after
    finally:
        again.close()


def test_bucket_counts_follow_adds_and_deletes(store: MemoryStore, version: int) -> None:
    texts = _write(store, version, n=12)
    store.retrieve_by_text("anything", 1)  # builds the index
    index = store.sketch_index
    assert np.array_equal(index.df, bucket_counts(TextSketch().documents(texts)))
    store.delete_documents(["d0", "d5"])
    index.refresh(force=True)
    left = [t for i, t in enumerate(texts) if i not in (0, 5)]
    assert len(index) == 10 and np.array_equal(index.df, bucket_counts(TextSketch().documents(left)))


def test_documents_without_a_sketch_are_never_found_by_text(store: MemoryStore, version: int) -> None:
    _write(store, version, n=12, sketched=6)
    found = store.retrieve_by_text("copper wheat oil coffee airline bank report number", 12)
    assert {d.id for d in found} == {f"d{i}" for i in range(6)}


def test_a_sketch_that_is_not_float16_numbers_is_refused(store: MemoryStore, version: int) -> None:
    bad = dataclasses.replace(random_docs(1, version)[0], text_sketch=b"\x00\x01\x02")
    with pytest.raises(InvalidRecord, match="a text sketch is float16 numbers, got 3 bytes"):
        store.write_batch([bad])
