"""The text sketch (memory_store.text_sketch): a hashed BM25 key of a document's words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learner.eval.bm25 import BM25
from memory_store.text_sketch import TextSketch, bucket_counts, rank, words

TEXTS = [
    "The cat sat on the mat while the dog slept.",
    "Dogs bark loudly at night in the old town.",
    "A cat and a dog and a cat played in the garden of the town.",
    "Kafka topics carry the stream of news documents.",
]
QUESTIONS = [
    "where did the cat sit",
    "what do dogs do at night",
    "what carries the news stream",
    "garden cat",
]


def test_with_buckets_to_spare_the_sketch_scores_are_bm25_s_scores() -> None:
    # no collisions among a few dozen words in 2^16 buckets: bucket df = word df, and with the
    # corpus' own mean length the inner product is Okapi BM25 (up to float16 rounding of the weights)
    mean = float(np.mean([len(words(t)) for t in TEXTS]))
    sketch = TextSketch(dims=2**16, mean_length=mean)
    keys = sketch.documents(TEXTS)
    assert keys.dtype == np.float16 and keys.shape == (4, 2**16)
    queries = sketch.queries(QUESTIONS, bucket_counts(keys), len(TEXTS))
    bm25 = BM25(TEXTS)
    got = np.abs(queries) @ np.abs(keys.astype(np.float32)).T  # signs cancel: same bucket, same sign
    want = np.stack([bm25.scores(q) for q in QUESTIONS])
    assert np.allclose(got, want, rtol=2e-3, atol=1e-3)
    assert np.allclose(queries @ keys.astype(np.float32).T, want, rtol=2e-3, atol=1e-3)
    assert (
        rank(keys, queries, 1)[:, 0].tolist() == [int(bm25.top(q, 1)[0]) for q in QUESTIONS] == [2, 1, 3, 2]
    )


def test_bucket_counts_are_documents_per_bucket() -> None:
    sketch = TextSketch(dims=2**16)
    keys = sketch.documents(TEXTS)
    df = bucket_counts(keys)
    the = sketch._bucket("the")[0]
    assert df[the] == 4 and df.sum() == sum(len(set(words(t))) for t in TEXTS)
    assert bucket_counts(np.zeros((0, 8))).tolist() == [0] * 8


def test_a_small_sketch_collides_but_still_ranks_by_shared_words() -> None:
    sketch = TextSketch(dims=64)
    keys = sketch.documents(TEXTS)
    assert (
        rank(keys, sketch.queries(["kafka topics news documents stream"], bucket_counts(keys), 4), 1)[0, 0]
        == 3
    )


def test_bad_shapes_are_errors() -> None:
    with pytest.raises(ValueError, match="at least one bucket"):
        TextSketch(dims=0)
    with pytest.raises(ValueError, match=r"bucket counts must have shape \(8,\)"):
        TextSketch(dims=8).queries(["q"], np.zeros(9, np.int64), 3)


def test_sketch_1024_finds_squad_dev_a_paragraphs_as_bench_key_sources_measured(shared_data: Path) -> None:
    # bench/key_sources.py: recall@8 0.861 over dev part A's 913 paragraphs (BM25 over the text 0.945)
    from corpora.qa import load_dataset

    ds = load_dataset(shared_data / "squad" / "squad-v1.1-dev-part-a.json", "squad")
    order = ds.doc_order()
    where = {d: i for i, d in enumerate(order)}
    sketch = TextSketch()
    keys = sketch.documents([ds.documents[d].text for d in order])
    queries = sketch.queries([e.question for e in ds.examples], bucket_counts(keys), len(order))
    gold = np.array([where[e.doc_id] for e in ds.examples])
    top = rank(keys, queries, 8)
    recall8 = float((top == gold[:, None]).any(1).mean())
    assert len(order) == 913 and 0.85 <= recall8 <= 0.87
