"""Token chunks and batches of the amortizer pretraining (:mod:`learner.pretraining.objective`).

Every text is tokenized with the base LM's tokenizer and cut into consecutive chunks of
``doc_tokens`` tokens. A chunk is one *document*: the amortizer reads it into K vectors, and the
base LM, reading only the prefix those vectors give, must

* **reconstruct** it: LM input ``<start> d_1 … d_n``, labels ``d_1 … d_n`` (autoencoding), and/or
* **continue** it: LM input ``<start> c_1 … c_m``, labels ``c_1 … c_m`` where c is the first
  ``cont_tokens`` tokens of the *next* chunk of the same text (the document itself is not in the
  LM's context, so the continuation, too, can only come through the memory).

``<start>`` is the tokenizer's BOS token (EOS when it has none), so the first token is scored as
well. Each LM row carries the index of the document whose memory it reads and its task, which
selects the fixed query of the aggregation path (:data:`learner.text.queries.TASK_QUERIES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from learner.text.batching import pad
from learner.text.queries import CONTINUE, RECONSTRUCT, TASK_QUERIES
from learner.text.tokenizers import Tokenizers

Objective = Literal["reconstruct", "continue", "both"]
OBJECTIVES: tuple[str, ...] = ("reconstruct", "continue", "both")


@dataclass(frozen=True)
class Chunk:
    doc: list[int]  # LM-tokenizer ids of the document (<= doc_tokens)
    cont: list[int]  # LM-tokenizer ids of the continuation (<= cont_tokens); empty at a text's end
    amort: list[int]  # amortization-tokenizer ids of the document (== doc when the tokenizer is shared)


@dataclass
class PretrainBatch:
    """One micro-batch: N documents and the R LM rows that read their memory."""

    doc_ids: Tensor  # (N, Td) amortization-tokenizer ids, right-padded
    doc_mask: Tensor  # (N, Td)
    lm_ids: Tensor  # (R, T) <start> + target tokens, right-padded
    lm_mask: Tensor  # (R, T)
    lm_labels: Tensor  # (R, T) target ids, -100 at <start> and pads
    row_doc: Tensor  # (R,) int64 document (row of doc_ids) whose memory the LM row reads
    row_task: Tensor  # (R,) int64 RECONSTRUCT or CONTINUE

    def to(self, device: torch.device) -> PretrainBatch:
        return PretrainBatch(**{k: v.to(device) for k, v in self.__dict__.items()})

    @property
    def num_docs(self) -> int:
        return int(self.doc_ids.shape[0])


def start_id(tokenizer: Any) -> int:
    bos = tokenizer.bos_token_id
    return int(bos if bos is not None else tokenizer.eos_token_id)


def chunk_texts(
    texts: Sequence[str],
    tokenizers: Tokenizers,
    doc_tokens: int,
    cont_tokens: int,
    objective: Objective,
    min_tokens: int = 8,
) -> list[Chunk]:
    """Chunks of every text, in text order. Chunks shorter than ``min_tokens`` are dropped, and with
    ``objective="continue"`` so is every chunk without a continuation."""
    ids = tokenizers.lm(list(texts), add_special_tokens=False)["input_ids"]
    chunks: list[Chunk] = []
    for tokens in ids:
        pieces = [list(tokens[i : i + doc_tokens]) for i in range(0, len(tokens), doc_tokens)]
        for i, piece in enumerate(pieces):
            cont = pieces[i + 1][:cont_tokens] if i + 1 < len(pieces) and cont_tokens > 0 else []
            if len(piece) < min_tokens or (objective == "continue" and not cont):
                continue
            chunks.append(Chunk(piece, cont, piece))
    if not tokenizers.shared and chunks:  # the amortizer reads the same text with its own tokenizer
        texts_again = tokenizers.lm.batch_decode([c.doc for c in chunks], skip_special_tokens=True)
        amort = tokenizers.amort(texts_again, truncation=True, max_length=doc_tokens)["input_ids"]
        chunks = [Chunk(c.doc, c.cont, list(a)) for c, a in zip(chunks, amort, strict=True)]
    return chunks


def split_held_out(chunks: Sequence[Chunk], eval_chunks: int, seed: int) -> tuple[list[Chunk], list[Chunk]]:
    """(held-out, training) chunks: the first ``eval_chunks`` of a seeded permutation are held out, never
    trained on (the pretraining run and anything that re-reads its held-out chunks use this one rule)."""
    order = np.random.default_rng(seed).permutation(len(chunks))
    return [chunks[i] for i in order[:eval_chunks]], [chunks[i] for i in order[eval_chunks:]]


def collate_pretrain(
    chunks: Sequence[Chunk], objective: Objective, start: int, amort_pad: int, lm_pad: int
) -> PretrainBatch:
    """Right-padded tensors: reconstruction rows first (one per document), then continuation rows
    (one per document that has a continuation)."""
    rows: list[tuple[list[int], int, int]] = []  # (targets, document, task)
    if objective in ("reconstruct", "both"):
        rows += [(c.doc, i, RECONSTRUCT) for i, c in enumerate(chunks)]
    if objective in ("continue", "both"):
        rows += [(c.cont, i, CONTINUE) for i, c in enumerate(chunks) if c.cont]
    doc_ids, doc_mask = pad([c.amort for c in chunks], amort_pad)
    lm_ids, lm_mask = pad([[start, *t] for t, _, _ in rows], lm_pad)
    labels = lm_ids.masked_fill(lm_mask == 0, -100)
    labels[:, 0] = -100  # <start> is given, not predicted
    row_doc = torch.tensor([d for _, d, _ in rows], dtype=torch.long)
    row_task = torch.tensor([t for _, _, t in rows], dtype=torch.long)
    return PretrainBatch(doc_ids, doc_mask, lm_ids, lm_mask, labels, row_doc, row_task)


def query_batch(tokenizers: Tokenizers, max_tokens: int) -> tuple[Tensor, Tensor]:
    """The fixed queries of :data:`TASK_QUERIES`, tokenized for the question encoder -> ids, mask (2, Tq)."""
    out = tokenizers.amort(list(TASK_QUERIES), truncation=True, max_length=max_tokens)["input_ids"]
    return pad([list(ids) for ids in out], tokenizers.amort_pad_id)
