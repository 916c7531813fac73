"""Tokenizers for both sides of the model, saved with every checkpoint.

Pretrained presets use the tokenizers that come with their networks (``from_pretrained`` on a
name or local path). A from-scratch model has none, and nothing can be downloaded, so
:func:`train_tokenizer` trains a byte-level BPE on the training corpus with the ``tokenizers``
library; the same tokenizer then serves the T5 side and the LM side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learner.errors import ModelLoadError

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


@dataclass
class Tokenizers:
    """The LM-side and amortization-side (T5) tokenizers; ``shared`` when they are one and the same."""

    lm: Any  # a transformers fast tokenizer
    amort: Any
    shared: bool = False

    @property
    def lm_eos_id(self) -> int:
        return int(self.lm.eos_token_id)

    @property
    def lm_pad_id(self) -> int:
        return int(self.lm.pad_token_id)

    @property
    def amort_pad_id(self) -> int:
        return int(self.amort.pad_token_id)

    def save(self, directory: Path) -> None:
        self.lm.save_pretrained(directory / "tokenizer_lm")
        if not self.shared:
            self.amort.save_pretrained(directory / "tokenizer_amort")

    @classmethod
    def load(cls, directory: Path) -> Tokenizers:
        lm = load_tokenizer(str(directory / "tokenizer_lm"))
        if (directory / "tokenizer_amort").is_dir():
            return cls(lm, load_tokenizer(str(directory / "tokenizer_amort")), shared=False)
        return cls(lm, lm, shared=True)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """Train a byte-level BPE tokenizer (special tokens <pad>=0, </s>=1, <unk>=2) on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[PAD, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, bos_token=EOS
    )


def load_tokenizer(source: str) -> Any:
    """A tokenizer from a local directory, a model name or a GGUF source (through its cache:
    :mod:`learner.model.gguf_source`); GPT-2 style ones get pad = eos."""
    from transformers import AutoTokenizer

    from learner.model.gguf_source import resolve_lm_source

    source = resolve_lm_source(source)[0]
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load tokenizer from {source!r}: {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def corpus_texts(rows: Iterable[tuple[str, str, str]]) -> Iterable[str]:
    """Training texts for a tokenizer: every document, question and ' ' + answer of (text, q, a) rows."""
    for text, question, answer in rows:
        yield text
        yield question + " " + answer
