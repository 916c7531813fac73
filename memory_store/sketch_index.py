"""The text-sketch index of a store: every document's :class:`~memory_store.text_sketch.TextSketch`
in one FAISS inner-product index, found by a question's words.

It follows the store exactly as the code-key index does (:class:`~memory_store.doc_index.DocumentIndex`:
built from ``documents`` on first use, then ``document_log``; the database confirms every candidate),
with two differences: one key space for every codebook version (a sketch does not depend on the
codebook), and the bucket counts (documents whose sketch is not zero in each bucket, (H,)) kept as
documents enter and leave, because a question's idf is computed from them at query time. Documents
without a sketch (written before migration 0006, or with sketches off) or with another H are not
indexed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memory_store.doc_index import DocumentIndex
from memory_store.models import documents
from memory_store.text_sketch import TextSketch

SPACE = 0  # the one key space (the code-key index's spaces are codebook versions)


class SketchIndex(DocumentIndex):
    """Text sketches of every stored document that has one; thread-safe."""

    def __init__(
        self,
        engine: Engine,
        sketch: TextSketch,
        flat_limit: int | None = None,
        refresh_s: float = 1.0,
        key_device: str | None = None,
    ) -> None:
        super().__init__(engine, _no_codebook, dict, flat_limit, refresh_s, key_device)
        self.sketch = sketch
        self.df = np.zeros(sketch.dims, np.int64)  # (H,) documents per non-zero bucket
        self._buckets: dict[int, npt.NDArray[np.int32]] = {}  # int id -> its non-zero buckets

    def _columns(self) -> tuple[sa.ColumnElement[Any], ...]:
        return (documents.c.id, documents.c.text_sketch)

    def _reset_keys(self) -> None:
        self.df[:] = 0
        self._buckets = {}

    def _indexed(self, ids: npt.NDArray[np.int64], keys: npt.NDArray[np.float32]) -> None:
        for i, row in zip(ids.tolist(), keys, strict=True):
            nz = np.flatnonzero(row).astype(np.int32)
            self._buckets[i] = nz
            self.df[nz] += 1

    def _unindexed(self, ids: npt.NDArray[np.int64]) -> None:
        for i in ids.tolist():
            nz = self._buckets.pop(i, None)
            if nz is not None:
                self.df[nz] -= 1

    def _keys(self, rows: Iterable[sa.Row]) -> dict[int, tuple[list[str], npt.NDArray[np.float32]]]:  # type: ignore[type-arg]
        """Rows (id, text_sketch) -> {SPACE: (ids, sketches (n, H))}, rows without a sketch of H skipped."""
        want = 2 * self.sketch.dims
        kept = [
            (r.id, bytes(r.text_sketch))
            for r in rows
            if r.text_sketch is not None and len(r.text_sketch) == want
        ]
        if not kept:
            return {}
        keys = (
            np.frombuffer(b"".join(b for _, b in kept), np.float16).reshape(len(kept), -1).astype(np.float32)
        )
        return {SPACE: ([n for n, _ in kept], keys)}

    def _book(self, version: int) -> npt.NDArray[np.float32]:
        return np.zeros((0, self.sketch.dims), np.float32)  # a sketch's query needs no codebook

    def query(self, question: str) -> npt.NDArray[np.float32]:
        """The query (H,) of ``question`` against the documents indexed now (their bucket counts)."""
        with self._lock:
            return self.sketch.queries([question], self.df.copy(), len(self))[0]


def _no_codebook(version: int) -> npt.NDArray[np.float32]:
    raise AssertionError("the sketch index reads no codebook")  # pragma: no cover
