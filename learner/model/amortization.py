"""Amortization network (docs/DESIGN.md §1.1) and the question encoder built the same way.

A T5 encoder reads the text; its decoder is fed K learnable prompt embeddings (not tokens) and
cross-attends to the encoder output; each of the K decoder states goes through its own small
MLP (LayerNorm -> Linear -> Tanh -> Linear, plus a linear skip when sizes differ) into the base
LM's hidden size D.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from transformers import T5Config, T5Model

from learner.model.config import T5Spec


class TokenwiseMLP(nn.Module):
    """K independent MLPs, one per token position, evaluated as batched matrix products.

    Token k: skip_k(x) + W2_k tanh(W1_k LN_k(x) + b1_k) + b2_k, where skip_k is the identity
    when d_in == d_out and a linear map otherwise. Same parameters as K separate modules. The
    hidden width is d_out (the papers) unless ``hidden`` narrows it (smaller checkpoints).
    """

    def __init__(self, num_tokens: int, d_in: int, d_out: int, hidden: int | None = None) -> None:
        super().__init__()
        h = hidden or d_out  # the papers' MLP: hidden = d_out
        self.num_tokens, self.d_in, self.d_out, self.hidden = num_tokens, d_in, d_out, h
        self.ln_weight = nn.Parameter(torch.ones(num_tokens, d_in))
        self.ln_bias = nn.Parameter(torch.zeros(num_tokens, d_in))
        self.w1 = nn.Parameter(torch.empty(num_tokens, d_in, h))
        self.b1 = nn.Parameter(torch.zeros(num_tokens, h))
        self.w2 = nn.Parameter(torch.empty(num_tokens, h, d_out))
        self.b2 = nn.Parameter(torch.zeros(num_tokens, d_out))
        self.skip_w: nn.Parameter | None = None
        self.skip_b: nn.Parameter | None = None
        if d_in != d_out:
            self.skip_w = nn.Parameter(torch.empty(num_tokens, d_in, d_out))
            self.skip_b = nn.Parameter(torch.zeros(num_tokens, d_out))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights.
        for w, fan_in in ((self.w1, self.d_in), (self.w2, self.hidden), (self.skip_w, self.d_in)):
            if w is not None and w.device.type != "meta":
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(w, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(B, K, d_in) -> (B, K, d_out)."""
        h = nn.functional.layer_norm(x, (self.d_in,))  # (B, K, d_in)
        h = h * self.ln_weight + self.ln_bias
        h = torch.tanh(torch.einsum("bki,kio->bko", h, self.w1) + self.b1)  # (B, K, hidden)
        h = torch.einsum("bki,kio->bko", h, self.w2) + self.b2  # (B, K, d_out)
        if self.skip_w is not None and self.skip_b is not None:
            return h + torch.einsum("bki,kio->bko", x, self.skip_w) + self.skip_b
        return h + x


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

    def __init__(self, t5: T5Model, num_tokens: int, out_dim: int) -> None:
        super().__init__()
        self.t5 = t5
        d_model = t5.config.d_model
        self.prompts = nn.Parameter(torch.randn(1, num_tokens, d_model) * 0.02)  # (1, K, d_t5)
        self.heads = TokenwiseMLP(num_tokens, d_model, out_dim)

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
