"""``mbc eval --retrieve K``: each question's memory is the K documents of the bank it retrieves.

The bank's documents get the keys the store gives them (:func:`memory_store.doc_keys.document_keys`:
the normalised mean of their stored code vectors) in the same FAISS index (:class:`KeyIndex`; an
exact numpy search where faiss is not installed, as on the GPU machine); each
question's query vector is the serving one (:func:`learner.ask.retrieval.query_vectors`). The
aggregation then reads exactly the retrieved documents' codes — as ``mbc ask --retrieve K`` does —
and ``recall_at_k`` says how often the gold document was among them.

With a learned key head (``mbc train-keys``, :mod:`learner.keys`) the keys are the same mean over a
document's codes, of the head's per-code key book instead of the stored code vectors, and the query is
the head's (any code combination: summed codes too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch

from learner.ask.retrieval import query_vectors
from learner.eval.bank import Bank
from learner.keys.head import KeyHead, encode_questions
from learner.model.mbc import MBCModel
from learner.model.memory import Memory
from learner.text.batching import TextBatcher, pad
from memory_store.doc_keys import KeyIndex, document_keys


@torch.no_grad()
def retrieve_for(
    model: MBCModel,
    texts: TextBatcher,
    bank: Bank,
    questions: Sequence[str],
    k: int,
    device: torch.device,
    batch_size: int = 64,
    key_head: KeyHead | None = None,
    bf16: bool = False,
) -> npt.NDArray[np.int64]:
    """Bank positions (Q, k') of each question's top documents (k' = min(k, N)), best first."""
    (version,) = bank.codebooks  # a bank holds the one version the model encoded it with
    book = bank.codebooks[version].float().cpu()  # (G·C, d)
    codes = bank.codes()  # (N, K·G)
    if key_head is not None:
        code_rows = model.codebook.code_rows(bank.codebooks[version].to(device))  # (G·C, D)
        keys = document_keys(codes, key_head.key_book(code_rows).cpu().numpy())  # (N, d_key)
    else:
        keys = document_keys(codes, book.numpy())  # (N, d)
    search = _searcher(version, keys)
    out = []
    for i in range(0, len(questions), batch_size):
        chunk = list(questions[i : i + batch_size])
        if key_head is not None:  # the head reads each question's own tokens (learner.keys.head)
            queries = key_head.queries(
                encode_questions(model, texts, chunk, device, bf16)
            ).cpu()  # (B, d_key)
        else:
            q_ids, q_mask = pad(texts.questions_amort(chunk), texts.tok.amort_pad_id)
            x = model.aggregator.question_encoder(q_ids.to(device), q_mask.to(device))  # (B, K, D)
            queries = query_vectors(model, x, bank.rows[version], book)  # (B, d)
        for q in queries.numpy():
            out.append(search(q, k))
    return np.stack(out) if out else np.zeros((0, min(k, len(codes))), np.int64)


def _searcher(
    version: int, keys: npt.NDArray[np.float32]
) -> Callable[[npt.NDArray[np.float32], int], npt.NDArray[np.int64]]:
    """Top-k positions by inner product: the store's FAISS index, or — where faiss is not installed
    (the GPU machine) — the same exact search in numpy (a bank of 10^3 documents is one matmul)."""
    try:
        index = KeyIndex.build(version, np.arange(len(keys), dtype=np.int64), keys)
    except ImportError:
        return lambda q, k: np.argsort(-(keys @ q), kind="stable")[:k].astype(np.int64)
    return lambda q, k: index.search(q, k)[1]


def retrieved_memory(bank: Bank, positions: npt.NDArray[np.int64], device: torch.device) -> Memory:
    """Per-question memory (Q, k·R, D): every stored code of each question's retrieved documents
    (one row per code: the naive form, equal to the counts aggregation over those documents)."""
    q, k = positions.shape
    rows = bank.document_rows(positions.reshape(-1))  # (Q·k, R, D)
    return Memory(rows.reshape(q, k * rows.shape[1], -1).to(device))


def recall_at_k(positions: npt.NDArray[np.int64], gold: Sequence[int]) -> float:
    """Share of questions whose gold document is among their retrieved ones."""
    if not len(gold):
        return 0.0
    return float(np.mean([g in row for row, g in zip(positions.tolist(), gold, strict=True)]))
