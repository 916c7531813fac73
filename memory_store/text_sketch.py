"""The text sketch: a document key written from the document's words, the text itself not kept.

A document's sketch holds BM25's saturated term frequencies, tf·(k1 + 1) / (tf + k1·(1 − b + b·len /
L)) with k1 1.5, b 0.75 and a *fixed* mean length L (a stream has no final corpus), each word added
into one of H buckets with a sign, both from the word's CRC-32 (a count sketch): (H,) float16, H·2
bytes. A question's query puts each of its distinct words into the same bucket with the same sign,
weighted by the bucket's idf over the documents searched (Lucene's log((N − df + 0.5) / (df + 0.5) + 1),
df = documents whose bucket is not zero: :func:`bucket_counts`, computed from the sketches
themselves). The inner product is then BM25 up to hash collisions.

Why (issue 20, ``bench/retrieval.md`` §4): on SQuAD dev part A (913 paragraphs) the learned keys
over a real SmolLM2 checkpoint's 54 bytes of codes find the gold paragraph in the top 8 for 0.32 of the
questions; BM25 over the raw text 0.945; this sketch 0.861 at H = 1,024 (2 KB per document), 0.760 at
512, 0.905 at 2,048 (``bench/key_sources.py``).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased ``\\w+`` tokens: what BM25 (``learner.eval.bm25``) and the sketch count."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class TextSketch:
    dims: int = 1024  # H buckets
    k1: float = 1.5
    b: float = 0.75
    mean_length: float = 120.0  # words; SQuAD paragraphs average ~120, news articles more

    def __post_init__(self) -> None:
        if self.dims < 1:
            raise ValueError(f"a text sketch needs at least one bucket, got dims={self.dims}")

    def _bucket(self, word: str) -> tuple[int, float]:
        h = zlib.crc32(word.encode())
        return h % self.dims, 1.0 if (h >> 31) & 1 else -1.0

    def documents(self, texts: Sequence[str]) -> npt.NDArray[np.float16]:
        """Sketches (N, H) of ``texts``."""
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            tf = Counter(words(text))
            norm = self.k1 * (1 - self.b + self.b * sum(tf.values()) / self.mean_length)
            for w, c in tf.items():
                bucket, sign = self._bucket(w)
                out[i, bucket] += sign * c * (self.k1 + 1) / (c + norm)
        return out.astype(np.float16)

    def queries(
        self, questions: Sequence[str], df: npt.NDArray[np.int64], n_docs: int
    ) -> npt.NDArray[np.float32]:
        """Queries (Q, H) of ``questions`` against ``n_docs`` documents with bucket counts ``df`` (H,)."""
        if df.shape != (self.dims,):
            raise ValueError(f"bucket counts must have shape ({self.dims},), got {df.shape}")
        d = df.astype(np.float64)
        idf = np.log((n_docs - d + 0.5) / (d + 0.5) + 1.0)  # (H,)
        out = np.zeros((len(questions), self.dims), dtype=np.float32)
        for i, q in enumerate(questions):
            for w in set(words(q)):
                bucket, sign = self._bucket(w)
                out[i, bucket] += sign * idf[bucket]
        return out


def bucket_counts(sketches: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Documents (H,) whose sketch is not zero in each bucket: the df of the query's idf."""
    s = np.asarray(sketches)
    return (s != 0).sum(axis=0).astype(np.int64)  # type: ignore[no-any-return]


def rank(sketches: npt.ArrayLike, queries: npt.ArrayLike, k: int) -> npt.NDArray[np.int64]:
    """Positions (Q, k) of the ``k`` best documents per query, best first (ties: the earlier first)."""
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(sketches, dtype=np.float32).T  # (Q, N)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
