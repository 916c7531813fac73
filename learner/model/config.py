"""Model and training hyperparameters: frozen dataclasses, saved inside every checkpoint.

A *preset* (:mod:`learner.model.presets`) bundles one :class:`ModelConfig` and one :class:`TrainConfig`.

The shape fields of :class:`T5Spec` and :class:`LMSpec` are used when a model is built from
config with random weights (``--init scratch``). With ``--init pretrained`` the networks come
from ``name`` (a Hugging Face name or a local directory) and the checkpoint records the loaded
architecture instead.

``encoder="lm"`` (the ``smollm2-135m`` preset) builds the amortization network and the question
encoder on the frozen base LM itself — each with its own LoRA adapter and K learnable summary
tokens (:mod:`learner.model.lm_encoder`) — and ignores the two :class:`T5Spec` fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from learner.errors import ConfigValueError
from learner.model.families import family

MemoryMode = Literal["compressed", "full", "none"]
# meta-training memory: compressed = MBC, full = MAC; none / paragraph train the baselines' KV-LoRA
# (question only: the closed-book floor; gold paragraph in the prompt: the ceiling)
TrainMemoryMode = Literal["compressed", "full", "none", "paragraph"]
EncoderKind = Literal["t5", "lm"]
MemoryQuery = Literal["question", "reconstruct"]
MEMORY_QUERIES: tuple[str, ...] = ("question", "reconstruct")
# How a context vector's G codes become memory: "rows" — each code decodes to its own row (K·G rows per
# document, a function of (group, code) alone: exact counts aggregation); "sum" — the G decoded groups
# add up to one row per vector (K rows, product quantization proper: with G·d = D the code space starts
# as plain PQ of the standardized vector, so it can start from a float-memory checkpoint; rows are per
# document, read with retrieval or oracle banks). bench/posthoc_quantize.py measured the choice.
CodeCombine = Literal["rows", "sum"]
CODE_COMBINES: tuple[str, ...] = ("rows", "sum")


@dataclass(frozen=True)
class T5Spec:
    """A T5 encoder-decoder used as amortization network or question encoder."""

    name: str = "t5-small"  # HF name or local path, for --init pretrained
    d_model: int = 512
    d_ff: int = 2048
    d_kv: int = 64
    num_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    vocab_size: int = 32128  # replaced by the tokenizer's size when built from scratch
    dropout: float = 0.1


@dataclass(frozen=True)
class LMSpec:
    """The frozen base language model; ``arch`` is its family, a row of :mod:`learner.model.families`."""

    name: str = "distilgpt2"
    arch: str = "gpt2"
    hidden: int = 768
    layers: int = 6
    heads: int = 12
    kv_heads: int | None = None  # Llama grouped-query attention; None = heads
    ffn: int = 3072
    max_positions: int = 1024
    vocab_size: int = 50257
    quantization: Literal["none", "nf4"] = "none"  # nf4 needs bitsandbytes (GPU only)
    dropout: float = 0.1
    tie_embeddings: bool = False  # Llama from config: output layer shares the input embeddings

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the MBC model's shapes and losses."""

    preset: str = "distilgpt2"
    amort: T5Spec = field(default_factory=T5Spec)
    question: T5Spec = field(default_factory=T5Spec)
    lm: LMSpec = field(default_factory=LMSpec)
    num_vectors: int = 12  # K: context vectors per document
    prefix_len: int = 2  # P: prefix positions per base-LM layer
    # what the aggregator's query reads: the question (MAC, MBC), or "reconstruct": amortizer
    # pretraining's fixed query (learner.text.queries), so the prefix is the document's own
    # reconstruction prefix, the same for every question, and the LM reads the question in its prompt
    # (in-context autoencoders); it needs a memory of the question's documents (oracle or retrieved)
    memory_query: MemoryQuery = "question"
    codebook_size: int = 512  # C
    commitment: float = 0.25  # beta
    vq_weight: float = 1.0  # lambda: total loss = QA + lambda * VQ
    codebook_update: Literal["gradient", "ema"] = "gradient"  # gradient = the paper; ema = EMA k-means codes
    usage_decay: float = 0.99
    dead_threshold: float = 1e-4
    # the code space (learner.model.code_space); code_dim None = quantize the raw D-vectors (the papers)
    codes_per_vector: int = 1  # G: product-quantization groups, one code of C each per context vector
    code_dim: int | None = None  # d: size of each group's code-space vectors
    code_standardize: bool = True  # code space: subtract each slot's running mean, divide by its std
    code_cosine: bool = True  # code space: l2-normalised vectors and codes
    code_combine: CodeCombine = "rows"  # code space: one memory row per code, or per vector (CodeCombine)
    agg_blocks: int = 4
    agg_heads: int = 8
    agg_head_dim: int = 96
    expand_hidden: int = 768  # hidden size of each prefix-token feed-forward block
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_last_n: int = 6
    max_doc_tokens: int = 1024
    max_question_tokens: int = 64
    max_answer_tokens: int = 24
    # amortization network and question encoder: T5s (the papers) or the base LM + LoRA + summary tokens
    encoder: EncoderKind = "t5"
    encoder_lora_r: int = 16  # encoder="lm": rank of each encoder's LoRA (q/k/v/o of every layer)
    encoder_lora_alpha: int = 32
    encoder_mlp_hidden: int | None = None  # hidden size of the per-token MLPs; None = the output size
    base_bf16: bool = False  # frozen base-LM weights in bf16 on GPU (trainable ones stay fp32)

    @property
    def stored_codes(self) -> int:
        """Code indices stored per document: K·G."""
        return self.num_vectors * self.codes_per_vector

    @property
    def stored_codebook_size(self) -> int:
        """Rows of a stored codebook version: G·C (what each stored index points into)."""
        return self.codebook_size * self.codes_per_vector

    @property
    def kv_dim(self) -> int:
        """Width of one layer's keys (and values): KV heads x head size."""
        return (self.lm.kv_heads or self.lm.heads) * self.lm.head_dim

    def validate(self) -> ModelConfig:
        """Raise :class:`ConfigValueError` for inconsistent values; return self."""
        lm_family = family(self.lm.arch)  # UnknownModelFamily first: the checks below assume a family
        checks = [
            (self.num_vectors >= 1, "num_vectors must be >= 1"),
            (self.prefix_len >= 1, "prefix_len must be >= 1"),
            (self.memory_query in MEMORY_QUERIES, f"memory_query must be one of {', '.join(MEMORY_QUERIES)}"),
            (2 <= self.codebook_size <= 65536, "codebook_size must be in [2, 65536]"),
            (self.codes_per_vector >= 1, "codes_per_vector must be >= 1"),
            (self.stored_codebook_size <= 65536, "codebook_size x codes_per_vector must be <= 65536"),
            (
                self.codes_per_vector == 1 or self.code_dim is not None,
                "codes_per_vector > 1 needs a code space (code_dim)",
            ),
            (self.code_dim is None or self.code_dim >= 1, "code_dim must be >= 1"),
            (self.code_combine in CODE_COMBINES, f"code_combine must be one of {', '.join(CODE_COMBINES)}"),
            (
                self.code_combine == "rows" or self.code_dim is not None,
                'code_combine="sum" needs a code space (code_dim)',
            ),
            (self.lm.hidden % self.lm.heads == 0, "lm.hidden must be divisible by lm.heads"),
            (
                self.lm.kv_heads is None or (self.lm.kv_heads >= 1 and self.lm.heads % self.lm.kv_heads == 0),
                "lm.heads must be a multiple of lm.kv_heads",
            ),
            (self.encoder_lora_r >= 1, "encoder_lora_r must be >= 1"),
            (
                self.encoder == "t5" or lm_family.encoder_targets is not None,
                f'encoder="lm" needs a base-LM family with encoder LoRA targets, not {self.lm.arch!r}',
            ),
            (0 <= self.lora_last_n <= self.lm.layers, "lora_last_n must be in [0, lm.layers]"),
            (self.lora_r >= 1, "lora_r must be >= 1"),
            (self.agg_blocks >= 1 and self.agg_heads >= 1, "aggregator needs >= 1 block and head"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigValueError(f"model config {self.preset!r}: {message}")
        return self


@dataclass(frozen=True)
class TrainConfig:
    """Meta-training settings (docs/DESIGN.md §1 for the paper presets)."""

    memory: TrainMemoryMode = "compressed"  # compressed = MBC, full = MAC, none / paragraph = baselines
    epochs: int = 50
    batch_size: int = 16  # documents whose QA loss is back-propagated per micro-batch
    grad_accum: int = 4
    lr: float = 1e-5
    warmup_ratio: float = 0.01
    grad_clip: float = 100.0
    backprop_fraction: float = 1.0  # MAC backprop dropout; < 1 enlarges the bank with no-grad documents
    oracle_fraction: float = (
        0.0  # share of questions whose memory is their own document only (else the batch)
    )
    patience: int | None = 10  # early stopping on validation QA loss, in evaluations; None disables
    min_delta: float = 0.0
    eval_every_steps: int | None = None  # None: evaluate at the end of every epoch
    val_bank_docs: int = 32  # bank size of the validation EM/F1 run
    val_max_questions: int = 256
    shuffle: Literal["rows", "groups"] = "rows"
    seed: int = 42
    mixed_precision: Literal["no", "bf16"] = "no"
    lm_pretrain_epochs: int = 0  # from-scratch base LM: epochs of plain LM training before meta-training
    lm_pretrain_lr: float = 1e-3
    lm_pretrain_batch_size: int = 32
    retrieval_warmup_steps: int = 0  # random-init encoders: retrieval warm-up before meta-training
    retrieval_warmup_lr: float = 1e-3
    tokenizer_vocab_size: int = 8000  # from-scratch tokenizer size
    # QA over a pretrained memory writer: the amortizer (and its LoRA adapter) and the codebook stay as
    # --init-from left them; only the aggregator, the question encoder, the prefix expander and KV-LoRA
    # learn. The codes then keep what pretraining put in them (issue 19: QA training lost it).
    freeze_writer: bool = False

    def validate(self) -> TrainConfig:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
            (0.0 < self.backprop_fraction <= 1.0, "backprop_fraction must be in (0, 1]"),
            (0.0 <= self.oracle_fraction <= 1.0, "oracle_fraction must be in [0, 1]"),
            (
                not self.freeze_writer or self.memory in ("compressed", "full"),
                f"freeze_writer: a {self.memory} run has no memory writer",
            ),
            (self.lr >= 0.0, "lr must be >= 0"),
            (self.patience is None or self.patience >= 0, "patience must be >= 0"),
            (0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)"),
            (
                self.retrieval_warmup_steps >= 0 and self.lm_pretrain_epochs >= 0,
                "warm-up lengths must be >= 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigValueError(f"train config: {message}")
        return self

    @property
    def loader_batch_size(self) -> int:
        """Documents per micro-batch: the grad part plus the no-grad part of backprop dropout."""
        return max(self.batch_size, round(self.batch_size / self.backprop_fraction))


def config_to_dict(cfg: ModelConfig | TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


LEGACY_MODEL_KEYS = {"num_tokens": "num_vectors"}  # checkpoints written before the glossary's names


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Inverse of :func:`config_to_dict` for :class:`ModelConfig` (unknown keys are an error; the old
    names of :data:`LEGACY_MODEL_KEYS` are read as their new ones)."""
    data = {LEGACY_MODEL_KEYS.get(k, k): v for k, v in data.items()}
    amort = T5Spec(**data.pop("amort"))
    question = T5Spec(**data.pop("question"))
    lm = LMSpec(**data.pop("lm"))
    return ModelConfig(amort=amort, question=question, lm=lm, **data)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return TrainConfig(**data)
