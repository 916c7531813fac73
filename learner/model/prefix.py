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

import torch
from torch import Tensor, nn

from learner.model.positionwise import PositionwiseMLP

Prefix = tuple[tuple[Tensor, Tensor], ...]  # per layer: (keys, values), each (B, H, P, hd)


def source_index(num_vectors: int, prefix_tokens: int) -> Tensor:
    """Which input vector feeds each of the ``prefix_tokens`` actual tokens -> (N,) int64."""
    repeat, extra = divmod(prefix_tokens, num_vectors)
    if repeat == 0:  # more vectors than tokens: use the first N
        return torch.arange(prefix_tokens)
    counts = [repeat + 1 if i < extra else repeat for i in range(num_vectors)]
    return torch.tensor([i for i, c in enumerate(counts) for _ in range(c)], dtype=torch.int64)


class PrefixExpander(PositionwiseMLP):
    """(B, K, D) -> per-layer prefix key/values for an LM with ``layers`` layers of ``heads`` KV heads.

    A :class:`learner.model.positionwise.PositionwiseMLP` over the N = L·2·P actual tokens (GELU, output
    and shared D -> kv_dim skip starting at zero), fed by :func:`source_index`.
    """

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
        kv = kv_dim or dim  # heads x head_dim of the keys/values
        n = layers * 2 * prefix_len
        super().__init__(n, dim, kv, hidden, nn.functional.gelu, shared_skip=True, zero_output=kv != dim)
        self.layers, self.heads, self.prefix_len, self.dim = layers, heads, prefix_len, dim
        self.kv_dim = kv
        self.prefix_tokens = n  # N = L·2·P actual tokens
        self.register_buffer("source", source_index(num_vectors, n), persistent=False)

    def tokens(self, x: Tensor) -> Tensor:
        """(B, K, D) -> the N actual tokens (B, N, kv_dim)."""
        return super().forward(x[:, self.source])  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> Prefix:  # type: ignore[override]
        b = x.shape[0]
        t = self.tokens(x)  # (B, N, kv_dim)
        t = t.reshape(
            b, self.prefix_len, self.layers * 2, self.heads, self.kv_dim // self.heads
        )  # (B, P, 2L, H_kv, hd)
        t = t.permute(2, 0, 3, 1, 4)  # (2L, B, H_kv, P, hd)
        return tuple((t[2 * layer], t[2 * layer + 1]) for layer in range(self.layers))
