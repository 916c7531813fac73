"""Okapi BM25 over raw document text: the text retriever of ``mbc eval --retriever bm25`` and the peer
baseline of ``bench/retrieval_bench.py``.

k1 1.5, b 0.75, Lucene's idf log((N - df + 0.5) / (df + 0.5) + 1), lower-cased ``\\w+`` tokens. The
weights are one dense (N, V) array: meant for evaluation banks (SQuAD dev part A: 913 paragraphs,
~20k words, 150 MB in float64); the store's own retrieval is over document keys
(:mod:`memory_store.doc_keys`). Written here in numpy rather than taken from bm25s or rank-bm25: it is
twenty lines, and the GPU machine, which runs ``mbc eval``, then needs no extra wheel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from memory_store.text_sketch import words

tokens = words  # lower-cased \w+ tokens, the same words the store's text sketch counts


class BM25:
    """BM25 scores of queries against a fixed list of texts."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        docs = [Counter(tokens(t)) for t in texts]
        self.vocab: dict[str, int] = {}
        for d in docs:
            for w in d:
                self.vocab.setdefault(w, len(self.vocab))
        tf = np.zeros((len(docs), len(self.vocab)), dtype=np.float64)  # (N, V)
        for i, d in enumerate(docs):
            for w, c in d.items():
                tf[i, self.vocab[w]] = c
        lengths = tf.sum(1)  # (N,)
        df = (tf > 0).sum(0)  # (V,)
        idf = np.log((len(docs) - df + 0.5) / (df + 0.5) + 1.0)  # (V,)
        norm = k1 * (1 - b + b * lengths[:, None] / max(float(lengths.mean()), 1e-9)) if len(docs) else 0.0
        self.weight = idf * tf * (k1 + 1) / (tf + norm)  # (N, V)

    def scores(self, query: str) -> npt.NDArray[np.float64]:
        """Score (N,) of every text for ``query`` (each distinct query term once)."""
        terms = [self.vocab[w] for w in set(tokens(query)) if w in self.vocab]
        return self.weight[:, terms].sum(1)  # type: ignore[no-any-return]

    def top(self, query: str, k: int) -> npt.NDArray[np.int64]:
        """Positions of the ``k`` best texts, best first (ties: the earlier text first)."""
        return np.argsort(-self.scores(query), kind="stable")[:k].astype(np.int64)
