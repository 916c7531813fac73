"""Self-supervised amortizer pretraining (`mbc pretrain-amortizer`), in-context-autoencoder style.

Why: trained on QA alone, the amortizer's K vectors carried almost nothing (the probe of
../shared/DESIGN.md §1); the literature first teaches the compressor on plain text. Here a text
chunk is amortized into K context vectors (through the codebook's straight-through quantization
with ``memory="compressed"``, as MBC stores codes; the floats with ``"full"``), and the frozen
base LM with its KV-LoRA, reading *only* the prefix those vectors give, reconstructs the chunk
and/or continues it under teacher forcing (:mod:`learner.pretraining.batches`).

The prefix goes through the model's own aggregation path, exactly as :meth:`MBCModel.prefix`
builds it at QA time: the question encoder reads a fixed query per task, the cross-attention
blocks attend over the document's own K vectors (a per-row memory of K rows), the expander turns
the result into per-layer key/values. Feeding the K vectors straight to the expander would train
an expander for inputs it never sees afterwards: at QA time it reads the aggregator's output,
which starts from the question vectors (residual) and adds what attention reads from memory. So
everything meta-training uses — amortizer (LoRA, summary tokens, MLPs), codebook, question
encoder, cross-attention, expander, KV-LoRA — is trained here, in the form it will be used.

Loss = mean over tasks of the token cross-entropy (+ λ·VQ loss when compressed). The measure of
success is the *memory gap* on held-out chunks (:func:`memory_gap`): the same loss with the
memory replaced by zeros (a memory that carries nothing; the query-dependent part of the prefix
stays) or by another document's vectors. The gap is what the K vectors carry about their text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from learner.errors import ConfigValueError
from learner.model.codebook_math import code_histogram, grouped_perplexity
from learner.model.mbc import MBCModel
from learner.model.memory import Memory
from learner.pretraining.batches import CONTINUE, OBJECTIVES, RECONSTRUCT, Objective, PretrainBatch

MemorySource = Literal["own", "zero", "shuffled"]


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of one pretraining run (saved in its checkpoints' trainer_state.json)."""

    memory: Literal["compressed", "full"] = "compressed"
    objective: Objective = "both"
    steps: int = 1000
    batch_size: int = 8  # documents per step
    lr: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    doc_tokens: int = 512  # chunk length; at most the preset's max_doc_tokens
    cont_tokens: int = 128
    log_every: int = 50  # steps between metric records (held-out memory gap included)
    eval_chunks: int = 32  # held-out chunks, never trained on
    kmeans_chunks: int = 1024  # compressed, fresh run: k-means initialisation of the codebook from these
    seed: int = 42

    def validate(self) -> PretrainConfig:
        checks = [
            (self.memory in ("compressed", "full"), "memory must be compressed or full"),
            (self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}"),
            (self.steps >= 1 and self.batch_size >= 1, "steps and batch size must be >= 1"),
            (self.lr >= 0 and self.warmup_steps >= 0, "lr and warmup steps must be >= 0"),
            (self.doc_tokens >= 8, "doc tokens must be >= 8"),
            (self.objective == "reconstruct" or self.cont_tokens >= 1, "continuation needs cont tokens >= 1"),
            (self.log_every >= 1 and self.eval_chunks >= 1, "log every and eval chunks must be >= 1"),
            (self.kmeans_chunks >= 0, "k-means chunks must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigValueError(f"pretrain config: {message}")
        return self


@dataclass
class TaskSums:
    """One task's token statistics in a batch, as device tensors (summed over steps, divided at log time)."""

    ce: Tensor  # () summed token cross-entropy
    correct: Tensor  # () tokens predicted right (argmax == label)
    tokens: Tensor  # () scored tokens


@dataclass
class PretrainOutput:
    loss: Tensor  # () mean of the task losses + lambda * VQ (what is back-propagated)
    tasks: dict[str, TaskSums]  # task -> its sums (tokens 0 when the batch has none of that task)
    vq_loss: Tensor  # ()
    perplexity: Tensor  # () codebook usage perplexity of the batch (0 with full memory)

    @property
    def task_loss(self) -> dict[str, Tensor]:
        """Task -> mean token cross-entropy of this batch (0 for a task it lacks)."""
        return {k: t.ce / t.tokens.clamp_min(1) for k, t in self.tasks.items()}


TASK_NAMES = {RECONSTRUCT: "reconstruct", CONTINUE: "continue"}


def context_vectors(
    model: MBCModel, batch: PretrainBatch, memory: str, train: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(memory rows (N, R, D), VQ loss, perplexity): R = K float vectors (full), or K·G decoded codes.
    ``train``: the codebook's straight-through forward with its usage tracking and resets; otherwise
    the inference quantization (no updates), its perplexity that of the codes it chose."""
    z = model.amortize(batch.doc_ids, batch.doc_mask)  # (N, K, D)
    zero = z.new_zeros(())
    if memory == "full":
        return z, zero, zero
    if train:
        q = model.codebook(z)
        return q.quantized, q.loss, q.perplexity
    book = model.codebook
    codes = book.encode(z)[0]  # (N, K·G)
    ppl = grouped_perplexity(code_histogram(codes, book.total_codes), book.groups)
    return book.lookup(codes).to(z.dtype), zero, ppl


def lm_logits(
    model: MBCModel, batch: PretrainBatch, vectors: Tensor, q_ids: Tensor, q_mask: Tensor
) -> Tensor:
    """Logits (R, T, V) of every LM row, each reading the prefix of its document's vectors (N, K, D)."""
    queries = model.aggregator.question_encoder(q_ids, q_mask)  # (tasks, K, D)
    x = queries[batch.row_task]  # (R, K, D)
    memory = Memory(vectors[batch.row_doc])  # (R, K, D): each row attends over its own document
    prefix = model.expander(model.aggregator.attend(x, memory))
    return model.lm(batch.lm_ids, batch.lm_mask, prefix).logits  # type: ignore[no-any-return]


def token_losses(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(cross-entropy (R, T-1), correct (R, T-1) bool, scored (R, T-1) bool) of next-token predictions."""
    pred = logits[:, :-1].float()  # (R, T-1, V)
    target = labels[:, 1:]  # (R, T-1)
    scored = target != -100
    # over (R·(T-1), V) rows: cross_entropy on (R, V, T-1) takes a strided "spatial" softmax that cost
    # 82 of 520 ms per step on the H200 (bench/results/smollm2_memory/2026-12-03/profile_pretrain.json)
    flat = F.cross_entropy(
        pred.reshape(-1, pred.shape[-1]), target.clamp(min=0).reshape(-1), reduction="none"
    )
    ce = flat.view_as(target) * scored
    correct = (pred.argmax(-1) == target) & scored
    return ce, correct, scored


def _per_task(
    ce: Tensor, correct: Tensor, scored: Tensor, row_task: Tensor
) -> tuple[Tensor, dict[str, TaskSums]]:
    """(mean over the tasks present of each task's mean token loss, per-task sums). No host sync: a task
    without scored tokens in this batch weighs 0."""
    sums: dict[str, TaskSums] = {}
    means, present = [], []
    for task, name in TASK_NAMES.items():
        rows = (row_task == task)[:, None]  # (R, 1)
        n = (scored & rows).sum()
        ce_sum = (ce * rows).sum()
        sums[name] = TaskSums(ce_sum.detach(), (correct & rows).sum(), n)
        means.append(ce_sum / n.clamp_min(1))
        present.append((n > 0).to(ce.dtype))
    weight = torch.stack(present)
    return (torch.stack(means) * weight).sum() / weight.sum().clamp_min(1), sums


def pretrain_loss(
    model: MBCModel, batch: PretrainBatch, q_ids: Tensor, q_mask: Tensor, memory: str
) -> PretrainOutput:
    """The training objective of one micro-batch (module docstring)."""
    vectors, vq, ppl = context_vectors(model, batch, memory, train=True)
    logits = lm_logits(model, batch, vectors, q_ids, q_mask)
    loss, sums = _per_task(*token_losses(logits, batch.lm_labels), batch.row_task)
    total = loss + model.config.vq_weight * vq
    return PretrainOutput(total, sums, vq.detach(), ppl.detach())


@torch.no_grad()
def memory_gap(
    model: MBCModel,
    batches: Sequence[PretrainBatch],
    q_ids: Tensor,
    q_mask: Tensor,
    memory: str,
) -> dict[str, float]:
    """Held-out loss and token accuracy per task with each document's own memory, a zero memory and
    (batches of >= 2 documents) the next document's memory; ``gap_<task>`` = zero - own loss,
    ``gap_other_<task>`` = other document's - own loss (what the memory says about *its* document);
    compressed: ``perplexity`` of all held-out codes (per group, mean over groups)."""
    was = model.training
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    book = model.codebook
    histogram = torch.zeros(book.total_codes)
    for batch in batches:
        own, _, _ = context_vectors(model, batch, memory, train=False)  # (N, R, D)
        if memory == "compressed":
            z = model.amortize(batch.doc_ids, batch.doc_mask)
            histogram += code_histogram(book.encode(z)[0], book.total_codes).cpu()
        sources = {"own": own, "zero": torch.zeros_like(own)}
        if batch.num_docs >= 2:
            sources["shuffled"] = own.roll(1, dims=0)
        for source, vectors in sources.items():
            ce, correct, scored = token_losses(
                lm_logits(model, batch, vectors, q_ids, q_mask), batch.lm_labels
            )
            for task, name in TASK_NAMES.items():
                rows = batch.row_task == task
                n = float(scored[rows].sum())
                for key, value in ((f"{source}_loss_{name}", ce), (f"{source}_acc_{name}", correct)):
                    sums[key] = sums.get(key, 0.0) + float(value[rows].sum())
                    counts[key] = counts.get(key, 0.0) + n
    model.train(was)
    out = {k: sums[k] / counts[k] for k in sums if counts[k] > 0}
    for name in TASK_NAMES.values():
        if f"own_loss_{name}" in out:
            out[f"gap_{name}"] = out[f"zero_loss_{name}"] - out[f"own_loss_{name}"]
        if f"shuffled_loss_{name}" in out:
            out[f"gap_other_{name}"] = out[f"shuffled_loss_{name}"] - out[f"own_loss_{name}"]
    if memory == "compressed":
        out["perplexity"] = float(grouped_perplexity(histogram, book.groups))
    return out
