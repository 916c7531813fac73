"""slice_codes (the naive path's input) agrees with the exact counts on every slice."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from memory_store.store import MemoryStore
from tests.memory_store.helpers import T0, random_docs


def test_slice_codes_match_counts(store: MemoryStore, version: int) -> None:
    docs = random_docs(120, version, seed=3)
    store.write_batch(docs)
    store.delete_documents(["d5", "d6"])
    slices = [
        {},
        {"source": "src1"},
        {"since": T0 + timedelta(hours=7, minutes=13), "until": T0 + timedelta(hours=50)},
        {"until": T0 + timedelta(hours=30), "source": "src2"},
        {"source": "nope"},
    ]
    for sl in slices:
        codes, versions = store.slice_codes(**sl)  # type: ignore[arg-type]
        expected = {(c.codebook_version, c.code): c.n for c in store.counts(**sl)}  # type: ignore[arg-type]
        got = Counter((int(v), int(c)) for row, v in zip(codes, versions, strict=True) for c in row)
        assert dict(got) == expected
        assert codes.shape[0] == sum(expected.values()) // 12
    codes, _ = store.slice_codes()
    assert codes.shape == (118, 12)
