"""Amortization network (docs/DESIGN.md §1.1) and the question encoder built the same way.

A T5 encoder reads the text; its decoder is fed K learnable prompt embeddings (not tokens) and
cross-attends to the encoder output; each of the K decoder states goes through its own small
MLP (:class:`learner.model.positionwise.PositionwiseMLP`: LayerNorm -> Linear -> Tanh -> Linear, plus a
linear skip when sizes differ) into the base LM's hidden size D.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import T5Config, T5Model

from learner.model.config import T5Spec
from learner.model.positionwise import PositionwiseMLP


def t5_config_from_spec(spec: T5Spec, vocab_size: int, pad_id: int, eos_id: int) -> T5Config:
    """A T5 configuration for a randomly initialised network of the spec's shape."""
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        d_model=spec.d_model,
        d_kv=spec.d_kv,
        d_ff=spec.d_ff,
        num_layers=spec.num_layers,
        num_decoder_layers=spec.num_decoder_layers,
        num_heads=spec.num_heads,
        dropout_rate=spec.dropout,
        feed_forward_proj="relu",
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        decoder_start_token_id=pad_id,
        use_cache=False,
        tie_word_embeddings=True,
    )
    return T5Config(**kwargs)


class PromptedT5(nn.Module):
    """T5 encoder-decoder that turns a token sequence into K vectors of size ``out_dim``."""

    def __init__(self, t5: T5Model, num_vectors: int, out_dim: int) -> None:
        super().__init__()
        self.t5 = t5
        d_model = t5.config.d_model
        self.prompts = nn.Parameter(torch.randn(1, num_vectors, d_model) * 0.02)  # (1, K, d_t5)
        self.heads = PositionwiseMLP(num_vectors, d_model, out_dim)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) token ids and mask -> (B, K, out_dim)."""
        enc = self.t5.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B, T, d)
        prompts = self.prompts.expand(input_ids.shape[0], -1, -1)  # (B, K, d)
        dec = self.t5.decoder(
            inputs_embeds=prompts,
            encoder_hidden_states=enc,
            encoder_attention_mask=attention_mask,
            use_cache=False,
        ).last_hidden_state  # (B, K, d)
        return self.heads(dec)  # (B, K, D)
