"""`mbc eval --retrieve`: the numpy search (no faiss, the GPU machine) ranks as the store's FAISS index."""

from __future__ import annotations

import numpy as np
import pytest

import learner.eval.retrieval as r
from memory_store.doc_keys import document_keys


def test_the_numpy_search_without_faiss_equals_the_faiss_index(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    book = rng.normal(size=(512, 16)).astype(np.float32)
    keys = document_keys(rng.integers(0, 512, size=(900, 12)), book)
    queries = keys[[3, 400, 899]] + 0.01 * rng.normal(size=(3, 16)).astype(np.float32)
    with_faiss = [r._searcher(1, keys)(q, 8) for q in queries]

    def no_faiss(*args: object, **kwargs: object) -> None:
        raise ImportError("No module named 'faiss'")

    monkeypatch.setattr(r.KeyIndex, "build", no_faiss)
    without = [r._searcher(1, keys)(q, 8) for q in queries]
    assert [w.tolist() for w in with_faiss] == [w.tolist() for w in without]
    assert [w[0] for w in without] == [3, 400, 899]
    assert r.recall_at_k(np.stack(without), [3, 0, 899]) == pytest.approx(2 / 3)
