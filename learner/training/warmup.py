"""Retrieval warm-up: the first phase of a run whose encoders start from random weights.

The papers start the amortization network and the question encoder from a pretrained T5 whose
representations of one entity in a document and in a question are already alike, so the
aggregator's cross-attention soon finds the right document. Random T5s give nearly the same vector
for every document, the attention over a bank stays uniform, and meta-training never starts to
retrieve (measured on `mbc synth` data: attention mass on the right document exactly at chance
for thousands of steps; see learner/NOTES.md).

This phase stands in for that pretraining. On training batches (each batch its own bank) it
minimises, for every question,

* an in-batch contrastive loss between mean-pooled document and question vectors (cosine with
  temperature 0.1: it makes the vectors of different documents differ quickly),
* the attention loss: −log of the first cross-attention block's attention mass on the question's
  own document, averaged over heads and query vectors, and
* the QA loss with the question's own document as the only memory, so the prefix path learns to
  read a document's vectors.

A compressed model then gets its codebook from k-means over the warmed-up context vectors (the
paper's uniform(±1/C) start would quantize every document to the same few codes: measured
perplexity ~30 of 512 and retrieval far below the float model's). Meta-training proper starts
afterwards, with a fresh optimizer and learning-rate warm-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import torch
import torch.nn.functional as F
from tqdm import tqdm

from learner.model.aggregator import CrossAttentionBlock
from learner.model.mbc import MBCModel, TrainBatch
from learner.model.memory import Memory


def own_document_attention_loss(model: MBCModel, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log attention mass of question i on document i's K rows (first block), mean over i, heads, queries.

    ``z`` (B, K, D) are the documents' memory vectors, ``x`` (B, K, D) the questions' query vectors.
    """
    block = cast(CrossAttentionBlock, model.aggregator.blocks[0])
    q = block._split(block.to_q(block.norm_q(x)))  # (B, H, K, hd)
    k = block._split(block.to_k(block.norm_mem(z)))  # (B, H, K, hd) document j's rows
    logits = torch.einsum("ihad,jhbd->ihajb", q, k) / q.shape[-1] ** 0.5  # (B, H, Kq, B, Kd)
    b = logits.shape[0]
    everything = logits.flatten(-2).logsumexp(-1)  # (B, H, Kq)
    own = logits[torch.arange(b), :, :, torch.arange(b)].logsumexp(-1)  # (B, H, Kq)
    return (everything - own).mean()


def contrastive_loss(z: torch.Tensor, x: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between mean-pooled document vectors z and question vectors x, (B, K, D) each."""
    d = F.normalize(z.mean(1), dim=-1)  # (B, D)
    q = F.normalize(x.mean(1), dim=-1)  # (B, D)
    sim = q @ d.t() / temperature  # (B, B)
    target = torch.arange(sim.shape[0], device=sim.device)
    return (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target)) / 2


def warmup_loss(model: MBCModel, batch: TrainBatch) -> tuple[torch.Tensor, float, float]:
    """(total loss, attention loss, own-document QA loss) of one batch."""
    z = model.amortizer(batch.doc_ids, batch.doc_mask)  # (B, K, D)
    x = model.aggregator.question_encoder(batch.q_ids, batch.q_mask)  # (B, K, D)
    contrast = contrastive_loss(
        z, x
    )  # shapes the vectors fast (cosine + temperature amplify small differences)
    attn = own_document_attention_loss(model, z, x)
    prefix = model.prefix(batch.q_ids, batch.q_mask, Memory(z))  # (B, K, D): each question its own document
    qa = model.lm(batch.qa_ids, batch.qa_mask, prefix, labels=batch.qa_labels).loss
    return contrast + attn + qa, float(attn.detach()), float(qa.detach())


@torch.no_grad()
def init_codebook_from_context(
    model: MBCModel, batches: Sequence[TrainBatch], device: torch.device, seed: int
) -> None:
    """Set the codebook to k-means centroids of the warmed-up context vectors, usage to their share."""
    model.eval()
    z = torch.cat(
        [model.amortizer(b.doc_ids.to(device), b.doc_mask.to(device)).float().cpu() for b in batches]
    )  # (N, K, D)
    per_step = batches[0].doc_ids.shape[0] * z.shape[1]  # vectors quantized per group per training step
    model.codebook.init_from_context(z, per_step, seed)
    model.train()


def retrieval_warmup(
    model: MBCModel,
    batches: Iterable[TrainBatch],
    *,
    steps: int,
    lr: float,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    progress: bool = True,
) -> list[tuple[float, float]]:
    """Run the warm-up over ``steps`` batches; returns (attention loss, QA loss) means per 50 steps."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history: list[tuple[float, float]] = []
    window: list[tuple[float, float]] = []
    for batch in tqdm(batches, total=steps, desc="retrieval warm-up", disable=not progress, leave=False):
        with autocast():
            loss, attn, qa = warmup_loss(model, batch.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        window.append((attn, qa))
        if len(window) == 50:
            history.append((sum(a for a, _ in window) / 50, sum(q for _, q in window) / 50))
            window = []
    return history
