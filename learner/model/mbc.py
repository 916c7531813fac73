"""The MBC model: amortize -> (quantize) -> aggregate -> expand -> answer (docs/DESIGN.md §1).

Memory modes:

* ``compressed`` (MBC): context vectors are replaced by their nearest codes; the bank stores code
  indices.
* ``full`` (MAC, the baseline): the bank stores the float context vectors.
* ``none``: the base LM alone — no prefix and no KV-LoRA.

``forward`` is the meta-training loss on one batch, in which the batch's own documents are the
memory bank of every question in the batch (as in the papers); with ``oracle_fraction`` > 0 a share
of the questions sees only its own document (the oracle setting), so that training covers both the
bank a user has and the single-document memory that says what compression keeps. A model trained
with ``train_memory`` ``none`` or ``paragraph`` is a baseline: its KV-LoRA learns to answer from the
question alone, or from the gold paragraph in the prompt (the batch's ``qa_ids`` then hold it), and
the memory path is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from learner.model.adapters import KV_ADAPTER, activate
from learner.model.aggregator import Aggregator
from learner.model.base_lm import BaseLM
from learner.model.code_space import CodeSpace
from learner.model.codebook import Codebook
from learner.model.config import ModelConfig, TrainMemoryMode
from learner.model.lora import apply_kv_lora, freeze_all_but_lora, lora_disabled
from learner.model.memory import Memory
from learner.model.prefix import Prefix, PrefixExpander


@dataclass
class TrainBatch:
    """Tensors of one micro-batch. Row i of every field belongs to example i."""

    doc_ids: Tensor  # (N, Td) amortization-tokenizer ids of the documents
    doc_mask: Tensor  # (N, Td)
    q_ids: Tensor  # (N, Tq) amortization-tokenizer ids of the questions
    q_mask: Tensor  # (N, Tq)
    qa_ids: Tensor  # (N, T) LM ids: question, answer, EOS, right padding
    qa_mask: Tensor  # (N, T)
    qa_labels: Tensor  # (N, T) answer and EOS ids, -100 elsewhere

    def to(self, device: torch.device) -> TrainBatch:
        return TrainBatch(**{k: v.to(device) for k, v in self.__dict__.items()})

    @property
    def size(self) -> int:
        return int(self.doc_ids.shape[0])


@dataclass
class LossOutput:
    loss: Tensor  # () QA + lambda * VQ
    qa_loss: Tensor
    vq_loss: Tensor
    perplexity: Tensor  # codebook usage perplexity of the batch (0 without a codebook)


class MBCModel(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        amortizer: nn.Module,  # PromptedT5 or SummaryTokenEncoder: (ids, mask) -> (N, K, D)
        question_encoder: nn.Module,
        lm: BaseLM,
        train_memory: TrainMemoryMode = "compressed",
    ) -> None:
        super().__init__()
        self.config = config
        self.train_memory = train_memory
        self.oracle_fraction = 0.0  # set by the trainer (TrainConfig.oracle_fraction)
        self.writer_frozen = False  # set by freeze_writer (TrainConfig.freeze_writer)
        d = lm.hidden
        self.amortizer = amortizer
        space = None
        if config.code_dim is not None:
            space = CodeSpace(
                d,
                config.num_vectors,
                config.codes_per_vector,
                config.code_dim,
                config.code_standardize,
                config.code_cosine,
                config.code_combine,
            )
        self.codebook = Codebook(
            config.codebook_size,
            d,
            config.commitment,
            config.usage_decay,
            config.dead_threshold,
            config.codebook_update,
            space,
        )
        self.aggregator = Aggregator(
            question_encoder, d, config.agg_blocks, config.agg_heads, config.agg_head_dim
        )
        self.expander = PrefixExpander(
            config.num_vectors,
            d,
            lm.num_layers,
            lm.num_kv_heads,
            config.prefix_len,
            config.expand_hidden,
            lm.num_kv_heads * lm.head_dim,
        )
        apply_kv_lora(
            lm.model, lm.arch, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_last_n
        )
        freeze_all_but_lora(lm.model)  # KV-LoRA and, with encoder="lm", the encoders' adapters train
        activate(lm.model, KV_ADAPTER)  # the answering side's resting state (learner.model.adapters)
        self.lm = lm

    # -- training -------------------------------------------------------------------------------------

    def freeze_writer(self) -> None:
        """Stop the memory's writing side from learning: the amortizer (its own weights and, for an
        encoder on the base LM, its LoRA adapter there) and the codebook (vectors, the code space's
        projections and statistics, usage, dead-code resets). What reads the memory still trains."""
        self.writer_frozen = True
        for p in self.amortizer.parameters():
            p.requires_grad_(False)
        adapter = getattr(self.amortizer, "adapter", None)  # SummaryTokenEncoder: its adapter's name
        if adapter is not None:
            for name, p in self.lm.model.named_parameters():
                if f".{adapter}." in name:
                    p.requires_grad_(False)
        for p in self.codebook.parameters():  # code vectors and the code space's projections
            p.requires_grad_(False)
        self.codebook.frozen = True

    def amortize(self, doc_ids: Tensor, doc_mask: Tensor, n_grad: int | None = None) -> Tensor:
        """Context vectors (N, K, D); only the first ``n_grad`` documents get gradients (backprop dropout)."""
        n = doc_ids.shape[0] if n_grad is None else n_grad
        if self.writer_frozen:
            n = 0  # nothing of the writer learns: no graph through it
        parts = [self.amortizer(doc_ids[:n], doc_mask[:n])] if n > 0 else []
        if n < doc_ids.shape[0]:
            with torch.no_grad():
                parts.append(self.amortizer(doc_ids[n:], doc_mask[n:]))
        return torch.cat(parts, dim=0)  # (N, K, D)

    def forward(self, batch: TrainBatch, n_grad: int | None = None) -> LossOutput:
        """Meta-training loss: the batch's documents are the bank; the first ``n_grad`` questions are scored."""
        n = batch.size if n_grad is None else n_grad
        if self.train_memory in ("none", "paragraph"):  # baselines: the LM and its KV-LoRA alone
            qa = self.lm(batch.qa_ids[:n], batch.qa_mask[:n], None, labels=batch.qa_labels[:n]).loss
            zero = qa.new_zeros(())
            return LossOutput(qa, qa.detach(), zero, zero)
        z = self.amortize(batch.doc_ids, batch.doc_mask, n)  # (N, K, D)
        zero = z.new_zeros(())
        if self.train_memory == "compressed":
            q = self.codebook(z)
            vectors, vq, ppl = q.quantized, q.loss, q.perplexity  # (N, R, D)
        else:
            vectors, vq, ppl = z, zero, zero  # (N, K, D)
        memory = Memory(vectors.reshape(-1, vectors.shape[-1]))  # (N·R, D) shared by all questions
        if self.training and self.oracle_fraction > 0:
            memory.log_weight = oracle_mask(
                n, vectors.shape[0], vectors.shape[1], self.oracle_fraction, z.device
            )
        prefix = self.prefix(batch.q_ids[:n], batch.q_mask[:n], memory)
        out = self.lm(batch.qa_ids[:n], batch.qa_mask[:n], prefix, labels=batch.qa_labels[:n])
        qa = out.loss
        return LossOutput(qa + self.config.vq_weight * vq, qa.detach(), vq.detach(), ppl.detach())

    # -- inference ------------------------------------------------------------------------------------

    def prefix(self, q_ids: Tensor, q_mask: Tensor, memory: Memory) -> Prefix:
        """Aggregate the memory for each question and expand to per-layer prefix key/values."""
        return self.expander(self.aggregator(q_ids, q_mask, memory))  # type: ignore[no-any-return]

    @torch.no_grad()
    def quantize(self, z: Tensor) -> Tensor:
        """Stored code indices (N, K·G) of context vectors (N, K, D); no usage tracking or reset."""
        return self.codebook.encode(z)[0]

    @torch.no_grad()
    def answer(
        self,
        q_ids: Tensor,
        q_mask: Tensor,
        gen_ids: Tensor,
        gen_mask: Tensor,
        memory: Memory | None,
        eos_id: int,
        max_new_tokens: int = 16,
        num_beams: int = 1,
        num_beam_groups: int = 1,
        diversity_penalty: float = 0.0,
        lora: bool = False,
    ) -> list[list[int]]:
        """Answer tokens for left-padded LM prompts ``gen_ids``; ``memory=None`` is the base LM alone,
        or with ``lora`` the LM with its trained KV-LoRA and no prefix (the paragraph-in-prompt row)."""
        settings = dict(
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            num_beam_groups=num_beam_groups,
            diversity_penalty=diversity_penalty,
        )
        if memory is None and lora:
            return self.lm.generate(gen_ids, gen_mask, None, eos_id, **settings)  # type: ignore[arg-type]
        if memory is None:
            with lora_disabled(self.lm.model):
                return self.lm.generate(gen_ids, gen_mask, None, eos_id, **settings)  # type: ignore[arg-type]
        prefix = self.prefix(q_ids, q_mask, memory)
        return self.lm.generate(gen_ids, gen_mask, prefix, eos_id, **settings)  # type: ignore[arg-type]


def oracle_mask(n: int, docs: int, rows: int, fraction: float, device: torch.device) -> Tensor:
    """Additive attention mask (n, docs·rows): questions drawn with probability ``fraction`` see only
    their own document's ``rows`` memory rows (0 there, -inf elsewhere); the others see every row."""
    oracle = torch.rand(n) < fraction  # (n,) global RNG: exact on resume
    owner = torch.arange(docs).repeat_interleave(rows)  # (docs·rows,) which document a row belongs to
    own = owner[None, :] == torch.arange(n)[:, None]  # (n, docs·rows)
    allowed = own | ~oracle[:, None]
    return torch.zeros(n, docs * rows).masked_fill(~allowed, float("-inf")).to(device)
