"""Token expansion (docs/DESIGN.md §1.5): K aggregated vectors -> a P-tuning-v2 prefix for every layer.

The K vectors are spread over N = L·2·P "actual tokens" (vector i feeds ⌈N/K⌉ or ⌊N/K⌋
consecutive tokens, the first N mod K vectors one more), each token goes through its own
feed-forward block (LayerNorm -> Linear -> GELU -> Linear, residual), and the N tokens are
reshaped into per-layer key and value tensors of shape (B, H, P, head_dim).

With grouped-query attention (Llama with fewer KV heads than query heads, e.g. SmolLM2's 3 of 9)
keys and values are ``kv_dim`` = KV heads x head_dim wide, narrower than D: each token's block
then ends in kv_dim outputs and the residual goes through one shared linear map D -> kv_dim.
That map and the blocks' output layers start at zero, so the untrained prefix is all zeros, which
a pretrained LM barely notices (SmolLM2-135M, two SQuAD-style questions: QA loss 5.3 without a
prefix, 5.1 with a zero prefix, 12.4 with a randomly initialised one).

Token n = p·(2L) + j holds, for layer l = j // 2, the key (j even) or value (j odd) of prefix
position p.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

Prefix = tuple[tuple[Tensor, Tensor], ...]  # per layer: (keys, values), each (B, H, P, hd)


def source_index(num_vectors: int, num_tokens: int) -> Tensor:
    """Which input vector feeds each of the ``num_tokens`` actual tokens -> (N,) int64."""
    repeat, extra = divmod(num_tokens, num_vectors)
    if repeat == 0:  # more vectors than tokens: use the first N
        return torch.arange(num_tokens)
    counts = [repeat + 1 if i < extra else repeat for i in range(num_vectors)]
    return torch.tensor([i for i, c in enumerate(counts) for _ in range(c)], dtype=torch.int64)


class PrefixExpander(nn.Module):
    """(B, K, D) -> per-layer prefix key/values for an LM with ``layers`` layers of ``heads`` KV heads."""

    source: Tensor  # (N,) which input vector feeds each actual token

    def __init__(
        self,
        num_vectors: int,
        dim: int,
        layers: int,
        heads: int,
        prefix_len: int,
        hidden: int,
        kv_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.layers, self.heads, self.prefix_len, self.dim = layers, heads, prefix_len, dim
        self.kv_dim = kv_dim or dim  # heads x head_dim of the keys/values
        self.num_tokens = layers * 2 * prefix_len
        self.register_buffer("source", source_index(num_vectors, self.num_tokens), persistent=False)
        n = self.num_tokens
        self.ln_weight = nn.Parameter(torch.ones(n, dim))
        self.ln_bias = nn.Parameter(torch.zeros(n, dim))
        self.w1 = nn.Parameter(torch.empty(n, dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(n, hidden))
        self.w2 = nn.Parameter(torch.empty(n, hidden, self.kv_dim))
        self.b2 = nn.Parameter(torch.zeros(n, self.kv_dim))
        self.skip: nn.Linear | None = None
        if self.kv_dim != dim:
            self.skip = nn.Linear(dim, self.kv_dim, bias=False)  # shared residual map D -> kv_dim
        for w, fan_in in ((self.w1, dim), (self.w2, hidden)):
            if w.device.type != "meta":
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(w, -bound, bound)
        if self.skip is not None and self.w2.device.type != "meta":
            nn.init.zeros_(self.w2)  # a zero prefix to start from (module docstring)
            nn.init.zeros_(self.skip.weight)

    def tokens(self, x: Tensor) -> Tensor:
        """(B, K, D) -> the N actual tokens (B, N, kv_dim)."""
        t = x[:, self.source]  # (B, N, D)
        h = nn.functional.layer_norm(t, (self.dim,)) * self.ln_weight + self.ln_bias
        h = nn.functional.gelu(torch.einsum("bnd,ndh->bnh", h, self.w1) + self.b1)  # (B, N, hidden)
        residual = t if self.skip is None else self.skip(t)  # (B, N, kv_dim)
        return residual + torch.einsum("bnh,nhd->bnd", h, self.w2) + self.b2  # (B, N, kv_dim)

    def forward(self, x: Tensor) -> Prefix:
        b = x.shape[0]
        t = self.tokens(x)  # (B, N, kv_dim)
        t = t.reshape(
            b, self.prefix_len, self.layers * 2, self.heads, self.kv_dim // self.heads
        )  # (B, P, 2L, H_kv, hd)
        t = t.permute(2, 0, 3, 1, 4)  # (2L, B, H_kv, P, hd)
        return tuple((t[2 * layer], t[2 * layer + 1]) for layer in range(self.layers))
