"""The question's side of retrieval, and citations: which stored documents an answer drew on.

**The query vector.** A document's key is the l2-normalised mean of its stored code vectors
(:func:`memory_store.doc_keys.document_keys`, in the space of its codebook version: (G·C, d)).
The question's query vector for version v is the same kind of mean, weighted by the model itself:

    a = softmax over the G·C codes of v of the first cross-attention block's logits
        (question vectors q_i·W_q against every code's memory row·W_k, no counts), averaged over
        heads and the K question vectors                                                 (G·C,)
    query_v = l2-normalise(a @ book_v)                                                   (d,)

``a_c`` is the attention *one stored occurrence* of code c would get, so a document's true share of
a whole-bank aggregation is proportional to the sum of ``a`` over its codes; with orthonormal codes
``<query_v, key_d>`` is exactly that (up to normalisation), and with C > d it is its smoothed form
(codes near the attended ones count too). No key head is learned: retrieval ranks documents by where
the trained aggregator looks, so retrieval and aggregation agree by construction.

**Citations.** After the answer's aggregation (over the retrieved documents, or the whole slice),
each memory row's attention share — averaged over blocks, heads and question vectors
(:meth:`Aggregator.attention_mass`) — is split equally between the stored occurrences it stands
for (a counts row (v, c) of count m stands for m codes); a document's *attention mass* is the sum
over its codes. Over every document of the memory the masses sum to 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from learner.model.aggregator import CrossAttentionBlock
from learner.model.mbc import MBCModel
from learner.model.memory import Memory
from learner.text.batching import TextBatcher, pad
from memory_store.records import RetrievedDocument


@dataclass(frozen=True)
class Citation:
    """A document an answer drew on, and the share of the aggregator's attention it got."""

    id: str
    title: str | None
    url: str | None
    source: str
    published_at: str  # ISO 8601, UTC
    attention_mass: float  # share of the answer's aggregation attention on this document's codes
    score: float  # retrieval score: inner product of the document's key and the question's query


@torch.no_grad()
def question_vectors(model: MBCModel, texts: TextBatcher, question: str, device: torch.device) -> Tensor:
    """The question encoder's K vectors for one question: (1, K, D)."""
    q_ids, q_mask = pad(texts.questions_amort([question]), texts.tok.amort_pad_id)
    return model.aggregator.question_encoder(q_ids.to(device), q_mask.to(device))  # type: ignore[no-any-return]


@torch.no_grad()
def query_vectors(
    model: MBCModel, x: Tensor, rows: Tensor, book: Tensor, keys: Tensor | None = None
) -> Tensor:
    """Query vectors (B, d) of questions ``x`` (B, K, D) for a codebook version whose stored vectors
    are ``book`` (G·C, d) and memory rows ``rows`` (G·C, D): the first block's attention over every
    code, averaged over heads and question vectors, as weights of a mean of code vectors. ``keys``:
    the first block's keys of ``rows`` (:func:`first_block_keys`), if cached."""
    block = model.aggregator.blocks[0]
    assert isinstance(block, CrossAttentionBlock)
    a = block.attention(x, Memory(rows.to(x.device)), keys).float().mean(dim=(1, 2))  # (B, G·C)
    return F.normalize(a.cpu() @ book.float().cpu(), dim=-1)  # (B, d)


@torch.no_grad()
def first_block_keys(model: MBCModel, rows: Tensor) -> Tensor:
    """The first cross-attention block's keys (H, G·C, hd) of a version's memory rows (G·C, D)."""
    block = model.aggregator.blocks[0]
    assert isinstance(block, CrossAttentionBlock)
    return block.keys(Memory(rows))


def query_function(
    model: MBCModel,
    x: Tensor,
    rows: Callable[[int], Tensor],
    keys: Callable[[int], Tensor | None] = lambda v: None,
) -> Callable[[int, npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    """``query(v, book)``: the query vector (d,) of one question ``x`` (1, K, D) for codebook version
    v, whose stored vectors are ``book`` (G·C, d), memory rows ``rows(v)`` (G·C, D) and first-block
    keys ``keys(v)`` (None: computed here)."""

    def query(version: int, book: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        book_t = torch.from_numpy(np.asarray(book, dtype=np.float32))
        return query_vectors(model, x, rows(version), book_t, keys(version))[0].numpy()  # type: ignore[no-any-return]

    return query


def document_masses(
    docs: Sequence[tuple[int, Sequence[int]]],
    count_rows: npt.NDArray[np.int64],
    row_mass: Tensor,
) -> list[float]:
    """Attention mass of each document (version, codes) of a memory built from ``count_rows``
    (R, 3) = (version, code, count), whose rows got ``row_mass`` (R,)."""
    index = {(int(v), int(c)): i for i, (v, c, _) in enumerate(count_rows)}
    per_code = row_mass.detach().float().cpu().numpy() / np.maximum(count_rows[:, 2], 1)  # (R,)
    out = []
    for version, codes in docs:
        out.append(
            float(sum(per_code[index[(version, int(c))]] for c in codes if (version, int(c)) in index))
        )
    return out


def citations(
    docs: Sequence[RetrievedDocument], count_rows: npt.NDArray[np.int64], row_mass: Tensor
) -> list[Citation]:
    """Citations of ``docs`` in a memory of ``count_rows`` whose rows got ``row_mass``, by mass."""
    return cite(docs, document_masses([(d.codebook_version, d.indices) for d in docs], count_rows, row_mass))


def cite(docs: Sequence[RetrievedDocument], masses: Sequence[float]) -> list[Citation]:
    """Citations of ``docs`` with the attention mass each got, highest first."""
    out = [
        Citation(d.id, d.title, d.url, d.source, d.published_at.isoformat(), round(m, 6), round(d.score, 6))
        for d, m in zip(docs, masses, strict=True)
    ]
    return sorted(out, key=lambda c: (-c.attention_mass, c.id))


def retrieved_codes(docs: Sequence[RetrievedDocument]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Codes (N, K) and versions (N,) of retrieved documents (one K per store)."""
    codes = np.asarray([d.indices for d in docs], dtype=np.int64).reshape(len(docs), -1)
    return codes, np.asarray([d.codebook_version for d in docs], dtype=np.int64)
