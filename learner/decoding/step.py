"""What a decoder needs from a model: a prefill call and a one-token advance over a KV cache."""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

# (logits of the last position (B, V) float32, cache, attention mask (B, S), last position ids (B, 1))
StepOutput = tuple[Tensor, Any, Tensor, Tensor]


class StepModel(Protocol):
    def prefill(self, input_ids: Tensor, attention_mask: Tensor, prefix: Any) -> StepOutput:
        """Run the prompt (B, T) after an optional prefix of past key/values."""
        ...

    def advance(self, tokens: Tensor, cache: Any, mask: Tensor, last_pos: Tensor) -> StepOutput:
        """Feed one token per row (B,) after what ``cache`` holds."""
        ...
