"""Small builders shared by the learner tests (tiny, random, offline)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from corpora.qa import load_dataset
from corpora.types import QADataset
from learner.data.synth.generator import SynthConfig, write_all
from learner.model.config import LMSpec, ModelConfig, T5Spec, TrainConfig
from learner.model.mbc import TrainBatch
from learner.model.presets import get_preset

WORDS = [
    "alice",
    "bob",
    "carol",
    "dave",
    "works",
    "as",
    "a",
    "baker",
    "pilot",
    "nurse",
    "what",
    "does",
    "do",
    "lives",
    "in",
    "oslo",
    "lima",
]


def tiny_gpt2(vocab: int = 64, layers: int = 3, hidden: int = 32, heads: int = 4) -> Any:
    cfg = AutoConfig.for_model(
        "gpt2",
        vocab_size=vocab,
        n_positions=64,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
        loss_type="ForCausalLM",
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


def tiny_llama(vocab: int = 64, layers: int = 3, hidden: int = 32, heads: int = 4) -> Any:
    cfg = AutoConfig.for_model(
        "llama",
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
        loss_type="ForCausalLM",
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


def small_model_config(arch: str = "gpt2", **overrides: Any) -> ModelConfig:
    """The tiny preset shrunk further (fast unit tests)."""
    base = get_preset("tiny").model
    t5 = T5Spec("t5-test", 32, 64, 8, 1, 1, 4, vocab_size=64, dropout=0.0)
    lm = LMSpec("lm-test", arch, 32, 2, 4, None, 64, 64, 64, dropout=0.0)  # type: ignore[arg-type]
    cfg = dataclasses.replace(
        base,
        preset="test",
        amort=t5,
        question=t5,
        lm=lm,
        codebook_size=16,
        agg_heads=2,
        agg_head_dim=8,
        codebook_update="gradient",
    )
    return dataclasses.replace(cfg, **overrides)


def random_batch(n: int, vocab: int = 64, seed: int = 0) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)

    def ids(t: int) -> torch.Tensor:
        return torch.randint(3, vocab, (n, t), generator=g)

    qa = ids(9)
    labels = torch.full_like(qa, -100)
    labels[:, 6:] = qa[:, 6:]
    ones = torch.ones
    return TrainBatch(
        ids(12),
        ones(n, 12, dtype=torch.long),
        ids(6),
        ones(n, 6, dtype=torch.long),
        qa,
        ones(n, 9, dtype=torch.long),
        labels,
    )


# One optimizer step of a small model on a few synthetic people: enough to write a real checkpoint.
ONE_STEP_TRAIN = TrainConfig(
    epochs=1,
    batch_size=4,
    lr=1e-3,
    patience=None,
    val_bank_docs=4,
    val_max_questions=4,
    tokenizer_vocab_size=300,
)


def small_synth(root: Path) -> tuple[QADataset, QADataset]:
    """(train, val) of a small synthetic split written to ``root`` (test.csv too)."""
    write_all(SynthConfig(pretrain_docs=8, train_docs=16, val_docs=8, test_docs=8, bank_size=4, seed=1), root)
    return load_dataset(root / "train.csv"), load_dataset(root / "val.csv")
