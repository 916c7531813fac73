"""Aggregation network (docs/DESIGN.md §1.4): question vectors attend over the memory.

A question encoder (T5 — or the base LM, ``encoder="lm"`` — with K learnable prompts, like the amortization network) gives K query
vectors; ``blocks`` pre-LayerNorm cross-attention blocks (LayerNorm on the queries and on the
memory, multi-head attention, residual, LayerNorm + feed-forward, residual) let them attend
over every memory row. Nothing here is positional on the memory side, and LayerNorm and the
K/V projections act per row, so a row repeated m times is the same as one row whose attention
logit gets + log m (docs/DESIGN.md §3a): :class:`learner.model.memory.Memory` carries that log-weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from learner.model.memory import Memory


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class CrossAttentionBlock(nn.Module):
    """x <- x + Attn(LN(x), LN(mem)); x <- x + FF(LN(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.norm_q = nn.LayerNorm(dim)
        self.norm_mem = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, inner if dim > inner else dim)

    def _split(self, t: Tensor) -> Tensor:
        # (..., M, H*hd) -> (..., H, M, hd)
        return t.unflatten(-1, (self.heads, self.head_dim)).transpose(-3, -2)

    def keys(self, memory: Memory) -> Tensor:
        """The attention keys of the memory rows: (H, M, hd) or (B, H, M, hd). They depend on the rows
        alone, so a reader may compute them once per codebook version."""
        return self._split(self.to_k(self.norm_mem(memory.vectors)))

    def attention(self, x: Tensor, memory: Memory, keys: Tensor | None = None) -> Tensor:
        """The attention weights this block gives the memory rows: (B, H, K, M), rows summing to 1 —
        what ``forward``'s fused attention computes and does not return (retrieval and citations
        read them); ``keys``: :meth:`keys` of ``memory`` if already computed."""
        q = self._split(self.to_q(self.norm_q(x)))  # (B, H, K, hd)
        k = (self.keys(memory) if keys is None else keys).to(q.dtype)  # (H, M, hd) or (B, H, M, hd)
        logits = q @ k.transpose(-1, -2) / self.head_dim**0.5  # (B, H, K, M)
        if memory.log_weight is not None:
            w = memory.log_weight.to(q.dtype)
            logits = logits + (w.view(1, 1, 1, -1) if w.dim() == 1 else w[:, None, None, :])
        return logits.softmax(-1)

    def forward_with_attention(self, x: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """``forward`` and :meth:`attention` in one pass (unfused attention): ((B, K, D), (B, H, K, M))."""
        mem = self.norm_mem(memory.vectors.to(x.dtype))  # (M, D) or (B, M, D)
        weights = self.attention(x, memory, self._split(self.to_k(mem)))  # (B, H, K, M)
        v = self._split(self.to_v(mem))  # (H, M, hd) or (B, H, M, hd)
        out = weights @ v  # (B, H, K, hd)
        x = x + self.to_out(out.transpose(1, 2).flatten(2))  # (B, K, D)
        return x + self.ff(self.norm_ff(x)), weights

    def forward(self, x: Tensor, memory: Memory) -> Tensor:
        """x (B, K, D), memory rows (M, D) or (B, M, D) -> (B, K, D)."""
        mem = self.norm_mem(memory.vectors.to(x.dtype))  # (M, D) or (B, M, D)
        q = self._split(self.to_q(self.norm_q(x)))  # (B, H, K, hd)
        k = self._split(self.to_k(mem))  # (H, M, hd) or (B, H, M, hd)
        v = self._split(self.to_v(mem))
        if k.dim() == 3:
            k = k.unsqueeze(0).expand(x.shape[0], -1, -1, -1)  # (B, H, M, hd), shared rows
            v = v.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
        bias = None
        if memory.log_weight is not None:
            w = memory.log_weight.to(q.dtype)
            bias = (
                w.view(1, 1, 1, -1) if w.dim() == 1 else w[:, None, None, :]
            )  # (1|B, 1, 1, M): + log(count)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, K, hd)
        x = x + self.to_out(out.transpose(1, 2).flatten(2))  # (B, K, D)
        return x + self.ff(self.norm_ff(x))


class Aggregator(nn.Module):
    """Question encoder + cross-attention blocks: (question, memory) -> K vectors (B, K, D)."""

    def __init__(self, question_encoder: nn.Module, dim: int, blocks: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.question_encoder = question_encoder
        self.blocks = nn.ModuleList([CrossAttentionBlock(dim, heads, head_dim) for _ in range(blocks)])

    def forward(self, question_ids: Tensor, question_mask: Tensor, memory: Memory) -> Tensor:
        x = self.question_encoder(question_ids, question_mask)  # (B, K, D)
        return self.attend(x, memory)

    def attend(self, x: Tensor, memory: Memory) -> Tensor:
        """Run the cross-attention blocks on query vectors ``x`` (B, K, D)."""
        if memory.num_rows == 0:
            raise ValueError("cannot aggregate over an empty memory")
        for block in self.blocks:
            x = block(x, memory)
        return x

    @torch.no_grad()
    def attention_mass(self, x: Tensor, memory: Memory) -> Tensor:
        """Share of the attention each memory row gets (B, M), averaged over blocks, heads and the K
        query vectors (each row of the result sums to 1); ``x`` (B, K, D) are the question vectors."""
        if memory.num_rows == 0:
            raise ValueError("cannot aggregate over an empty memory")
        mass = x.new_zeros(x.shape[0], memory.num_rows)
        for block in self.blocks:
            assert isinstance(block, CrossAttentionBlock)
            x, weights = block.forward_with_attention(x, memory)
            mass = mass + weights.mean(dim=(1, 2))  # (B, M)
        return mass / len(self.blocks)
