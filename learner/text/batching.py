"""Tokenization and padding: QA examples -> tensors for training and for answering.

Documents and questions go through the amortization (T5-side) tokenizer; the base LM sees
``question`` then `` answer`` + EOS, with the loss on the answer and EOS only (as in the papers).
Training batches are right-padded; prompts for generation are left-padded so that every row's
last position is its last real token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from corpora.types import QADataset
from learner.model.config import ModelConfig
from learner.model.mbc import TrainBatch
from learner.text.queries import RECONSTRUCT, TASK_QUERIES
from learner.text.tokenizers import Tokenizers


@dataclass(frozen=True)
class Encoded:
    """Token ids of one example."""

    doc: list[int]  # amortization tokenizer, document
    q_amort: list[int]  # amortization tokenizer, question
    question: list[int]  # LM tokenizer, question (paragraph baseline: paragraph, newline, question)
    answer: list[int]  # LM tokenizer, " " + answer, then EOS


def pad(seqs: Sequence[Sequence[int]], value: int, left: bool = False) -> tuple[Tensor, Tensor]:
    """Pad to the longest sequence -> (ids (B, T), mask (B, T))."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not s:
            continue
        sl = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, sl] = torch.tensor(list(s), dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


class TextBatcher:
    """Tokenizes texts the way the model was trained to read them."""

    def __init__(self, tokenizers: Tokenizers, cfg: ModelConfig) -> None:
        self.tok, self.cfg = tokenizers, cfg

    def _amort(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        out = self.tok.amort(list(texts), truncation=True, max_length=limit, add_special_tokens=True)
        return [list(ids) for ids in out["input_ids"]]

    def documents(self, texts: Sequence[str]) -> list[list[int]]:
        return self._amort(texts, self.cfg.max_doc_tokens)

    def questions_amort(self, questions: Sequence[str]) -> list[list[int]]:
        """What the aggregator's query reads for each question: the question itself, or with
        ``memory_query="reconstruct"`` pretraining's fixed reconstruction query for all of them."""
        if self.cfg.memory_query == "reconstruct":
            questions = [TASK_QUERIES[RECONSTRUCT]] * len(questions)
        return self._amort(questions, self.cfg.max_question_tokens)

    def questions_own(self, questions: Sequence[str]) -> list[list[int]]:
        """Each question's own tokens for the question encoder, whatever ``memory_query`` says (learned
        retrieval keys read the question even where the aggregator reads a fixed query)."""
        return self._amort(questions, self.cfg.max_question_tokens)

    def questions_lm(self, questions: Sequence[str]) -> list[list[int]]:
        out = self.tok.lm(list(questions), add_special_tokens=False)["input_ids"]
        return [list(ids)[-self.cfg.max_question_tokens :] for ids in out]

    def paragraph_prompts_lm(self, paragraphs: Sequence[str], questions: Sequence[str]) -> list[list[int]]:
        """LM prompts ``paragraph`` (first ``max_doc_tokens`` tokens), newline, ``question``: the
        paragraph-in-prompt ceiling of `mbc eval`."""
        docs = self.tok.lm(list(paragraphs), add_special_tokens=False)["input_ids"]
        newline = list(self.tok.lm("\n", add_special_tokens=False)["input_ids"])
        return [
            [*list(d)[: self.cfg.max_doc_tokens], *newline, *q]
            for d, q in zip(docs, self.questions_lm(questions), strict=True)
        ]

    def answers_lm(self, answers: Sequence[str]) -> list[list[int]]:
        out = self.tok.lm([" " + a for a in answers], add_special_tokens=False)["input_ids"]
        limit = self.cfg.max_answer_tokens - 1
        return [[*list(ids)[:limit], self.tok.lm_eos_id] for ids in out]

    def encode(self, ds: QADataset, paragraph: bool = False) -> list[Encoded]:
        """Every example of ``ds``, each document tokenized once. ``paragraph``: the LM side reads the
        gold paragraph, a newline and the question (the paragraph baseline's training prompt)."""
        doc_ids = list(ds.documents)
        doc_tokens = dict(zip(doc_ids, self.documents([ds.documents[d].text for d in doc_ids]), strict=True))
        questions = [ex.question for ex in ds.examples]
        q_amort = self.questions_amort(questions)
        q_lm = (
            self.paragraph_prompts_lm([ds.documents[ex.doc_id].text for ex in ds.examples], questions)
            if paragraph
            else self.questions_lm(questions)
        )
        answers = self.answers_lm([ex.target for ex in ds.examples])
        return [
            Encoded(doc_tokens[ex.doc_id], qa, ql, a)
            for ex, qa, ql, a in zip(ds.examples, q_amort, q_lm, answers, strict=True)
        ]

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self.tok.lm.decode(list(tokens), skip_special_tokens=True)).strip()


def collate_train(items: Sequence[Encoded], amort_pad: int, lm_pad: int) -> TrainBatch:
    """Right-padded training tensors; labels cover the answer and EOS."""
    doc_ids, doc_mask = pad([e.doc for e in items], amort_pad)
    q_ids, q_mask = pad([e.q_amort for e in items], amort_pad)
    qa_ids, qa_mask = pad([e.question + e.answer for e in items], lm_pad)
    labels = torch.full_like(qa_ids, -100)
    for i, e in enumerate(items):
        start = len(e.question)
        labels[i, start : start + len(e.answer)] = torch.tensor(e.answer)
    return TrainBatch(doc_ids, doc_mask, q_ids, q_mask, qa_ids, qa_mask, labels)
