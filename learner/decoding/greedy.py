"""Greedy (argmax) decoding."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from learner.decoding.step import StepModel


@torch.no_grad()
def greedy_search(
    lm: StepModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    prefix: Any,
    eos_id: int,
    max_new_tokens: int,
) -> list[list[int]]:
    """Argmax decoding; returns each row's tokens up to (not including) EOS."""
    logits, cache, mask, pos = lm.prefill(input_ids, attention_mask, prefix)
    b = input_ids.shape[0]
    outputs: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    for step in range(max_new_tokens):
        tokens = logits.argmax(-1)  # (B,)
        for i, t in enumerate(tokens.tolist()):
            if not done[i]:
                if t == eos_id:
                    done[i] = True
                else:
                    outputs[i].append(t)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        logits, cache, mask, pos = lm.advance(tokens, cache, mask, pos)
    return outputs
