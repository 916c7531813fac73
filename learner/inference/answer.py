"""Answering questions against a memory: decoding settings and the batched answer loop."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from learner.model.mbc import MBCModel
from learner.model.memory import Memory
from learner.text.batching import TextBatcher, pad


@dataclass(frozen=True)
class DecodeConfig:
    num_beams: int = 1
    num_beam_groups: int = 1
    diversity_penalty: float = 0.0
    max_new_tokens: int = 16

    @classmethod
    def paper(cls) -> DecodeConfig:
        """12 beams in 4 groups, diversity penalty 10, top-1 (MAC / MBC evaluation)."""
        return cls(12, 4, 10.0)

    @property
    def name(self) -> str:
        return "greedy" if self.num_beams == 1 else f"beam{self.num_beams}x{self.num_beam_groups}"


def _autocast(device: torch.device, bf16: bool) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


@torch.no_grad()
def answer_questions(
    model: MBCModel,
    texts: TextBatcher,
    questions: Sequence[str],
    memory: Memory | None,
    decode: DecodeConfig,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
    contexts: Sequence[str] | None = None,
    lora: bool = False,
) -> list[str]:
    """Predicted answer text for every question.

    ``memory`` is one memory shared by every question, or a *per-question* memory whose vectors are
    (Q, R, D) (row q for question q: e.g. the oracle setting, only the question's own document).
    With ``contexts`` (one paragraph per question) the LM reads paragraph + question in its prompt,
    with its KV-LoRA and no memory; ``lora`` with no memory: the question alone, with the KV-LoRA
    (the closed-book baseline)."""
    preds: list[str] = []
    per_question = memory is not None and memory.vectors.dim() == 3
    for i in range(0, len(questions), batch_size):
        chunk = list(questions[i : i + batch_size])
        mem = memory
        if per_question and memory is not None:
            mem = Memory(memory.vectors[i : i + batch_size].to(device))
        q_ids, q_mask = pad(texts.questions_amort(chunk), texts.tok.amort_pad_id)
        prompts = (
            texts.paragraph_prompts_lm(contexts[i : i + batch_size], chunk)
            if contexts is not None
            else texts.questions_lm(chunk)
        )
        g_ids, g_mask = pad(prompts, texts.tok.lm_pad_id, left=True)
        with _autocast(device, bf16):
            out = model.answer(
                q_ids.to(device),
                q_mask.to(device),
                g_ids.to(device),
                g_mask.to(device),
                mem,
                texts.tok.lm_eos_id,
                max_new_tokens=decode.max_new_tokens,
                num_beams=decode.num_beams,
                num_beam_groups=decode.num_beam_groups,
                diversity_penalty=decode.diversity_penalty,
                lora=lora or contexts is not None,
            )
        preds += [texts.decode(t) for t in out]
    return preds
