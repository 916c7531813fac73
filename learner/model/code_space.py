"""The space codes live in: a context vector (D) becomes G small code-space vectors (d each) and back.

Why (docs/DESIGN.md §1, measured on SmolLM2): about 89 % of a context vector's squared norm is what
every document shares in that slot, and one massive-activation channel (|value| ~40 against a
median of 0.65) dominates every L2 distance. A nearest-code search in that raw space spends all
its codes on the shared part: a healthy codebook (perplexity ~115 of 512) still kept nothing of the
document (memory gap 0.001 where float vectors reach 0.25). So the codebook does not quantize the
raw vector. It quantizes

    x = down((z - mean_k) / std_k)  split into G groups of d,  each l2-normalised (cosine codes)

where ``mean_k``/``std_k`` are running per-slot statistics over documents (what all documents
share, and each channel's spread: the massive channel is scaled down to the others), ``down`` is
a learned map D -> G·d, and each group has its own codebook of C codes (product quantization:
G codes per vector, the capacity knob). A stored code (group g, code c) is decoded into a memory
row of size D by its group's learned map ``up_g`` — the aggregator attends over these K·G rows.
Every memory row is a function of (group, code) alone, so the exact counts aggregation of
docs/DESIGN.md §3a stays exact: count per (version, group, code).

``combine="sum"`` (ModelConfig.code_combine) makes it product quantization proper: a vector's G decoded
codes add up to one memory row, mapped back out of the standardized space (slot_mean + std ⊙ Σ_g
up_g(e_g)), K rows per document. With G·d = D the maps start as the identity and block embeddings, so
the first forward is plain PQ of the standardized vector: started from a float-memory checkpoint, the
memory keeps what a k-means PQ keeps of its vectors (bench/posthoc_quantize.py), where the ``rows`` form
must learn its decoder from scratch. Rows are then per document, not per code.

The statistics are buffers (in the checkpoint, updated as an EMA by training forwards only, frozen
for serving); ``down``/``up`` are trained. The codebook versions the worker publishes live in the
code space; their memory rows are ``rows(vectors)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from learner.model.config import CodeCombine


class CodeSpace(nn.Module):
    """Context vectors (N, K, D) <-> code-space vectors (N, K, G, d)."""

    slot_mean: Tensor  # (K, D) running mean of the context vectors of each slot
    slot_var: Tensor  # (K, D) running variance
    stats_ready: Tensor  # () bool: the statistics have seen data

    def __init__(
        self,
        dim: int,
        slots: int,
        groups: int,
        code_dim: int,
        standardize: bool = True,
        cosine: bool = True,
        combine: CodeCombine = "rows",
        momentum: float = 0.01,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.dim, self.slots, self.groups, self.code_dim = dim, slots, groups, code_dim
        self.standardize, self.cosine, self.momentum, self.eps = standardize, cosine, momentum, eps
        self.combine = combine
        self.register_buffer("slot_mean", torch.zeros(slots, dim))
        self.register_buffer("slot_var", torch.ones(slots, dim))
        self.register_buffer("stats_ready", torch.zeros((), dtype=torch.bool))
        self.down = nn.Linear(dim, groups * code_dim, bias=False)
        self.up_w = nn.Parameter(torch.empty(groups, code_dim, dim))
        self.up_b = nn.Parameter(torch.zeros(groups, dim))
        if self.up_w.device.type != "meta":
            self.reset_maps()

    @property
    def is_pq(self) -> bool:
        """Summed groups that tile the vector exactly (G·d = D): the maps can start as plain PQ."""
        return self.combine == "sum" and self.groups * self.code_dim == self.dim

    @torch.no_grad()
    def reset_maps(self) -> None:
        """Initial ``down``/``up``. Product quantization (:attr:`is_pq`): ``down`` the identity and
        ``up_g`` the embedding of block g, so that at the start decode(quantize(z)) is the PQ
        reconstruction of the standardized z — a float-memory checkpoint's vectors keep what a
        k-means PQ keeps of them (bench/posthoc_quantize.py). Otherwise random: orthogonal ``down``
        (every group sees independent directions), small random ``up`` and per-group biases."""
        if self.is_pq:
            self.down.weight.copy_(torch.eye(self.dim))
            blocks = torch.eye(self.dim).view(self.groups, self.code_dim, self.dim)  # (G, d, D)
            self.up_w.copy_(blocks)
            self.up_b.zero_()
            return
        nn.init.orthogonal_(self.down.weight)
        nn.init.normal_(self.up_w, std=1.0 / math.sqrt(self.code_dim))
        nn.init.normal_(self.up_b, std=0.02)  # groups distinguishable from the start

    @torch.no_grad()
    def set_stats(self, z: Tensor) -> None:
        """Statistics from a sample of context vectors (N, K, D) (k-means initialisation)."""
        zf = z.detach().float()
        self.slot_mean.copy_(zf.mean(0))
        self.slot_var.copy_(zf.var(0, unbiased=False) if zf.shape[0] > 1 else torch.ones_like(zf[0]))
        self.stats_ready.fill_(True)

    @torch.no_grad()
    def update_stats(self, z: Tensor) -> None:
        """EMA of the per-slot mean and variance with a training batch (N, K, D)."""
        if not bool(self.stats_ready):
            self.set_stats(z)
            return
        zf = z.detach().float()
        m = self.momentum
        self.slot_mean.mul_(1 - m).add_(zf.mean(0), alpha=m)
        self.slot_var.mul_(1 - m).add_(
            zf.var(0, unbiased=False) if zf.shape[0] > 1 else self.slot_var, alpha=m
        )

    def forward(self, z: Tensor) -> Tensor:
        """(N, K, D) -> (N, K, G, d); unit vectors with ``cosine``."""
        x = z
        if self.standardize:  # in float32: bf16 would round the massive channel's document part away
            x = (z.float() - self.slot_mean) * torch.rsqrt(self.slot_var + self.eps)  # (N, K, D)
        x = self.down(x).unflatten(-1, (self.groups, self.code_dim))  # (N, K, G, d)
        return F.normalize(x, dim=-1) if self.cosine else x

    def decode(self, e: Tensor) -> Tensor:
        """Code-space vectors (..., G, d) -> memory rows: (..., G, D) one per code (``rows``); with
        ``sum``, e is (N, K, G, d) and the groups add up to one row per vector, mapped back out of the
        standardized space: slot_mean + std ⊙ Σ_g up_g(e_g) -> (N, K, D)."""
        rows = torch.einsum("...gd,gdo->...go", e, self.up_w.to(e.dtype)) + self.up_b.to(e.dtype)
        if self.combine == "rows":
            return rows
        x = rows.float().sum(-2)  # (N, K, D)
        if self.standardize:
            x = x * torch.sqrt(self.slot_var + self.eps) + self.slot_mean
        return x.to(e.dtype)

    def rows(self, vectors: Tensor) -> Tensor:
        """A codebook (G·C, d), group-major -> its memory rows (G·C, D). Only for ``rows``: summed codes
        have no row of their own (a document's rows are :meth:`decode` of its G codes per vector)."""
        if self.combine != "rows":
            raise ValueError('code_combine="sum": codes have no memory row of their own; decode documents')
        return self.code_rows(vectors)

    def code_rows(self, vectors: Tensor) -> Tensor:
        """Each code's up-projection (G·C, D): its memory row with ``rows``; with ``sum`` what it adds
        to its vector's row in the standardized space (a row is slot_mean + std ⊙ the sum of G of them),
        so a document's mean of these is an affine function of its decoded rows' mean (learned keys)."""
        book = vectors.reshape(self.groups, -1, self.code_dim)  # (G, C, d)
        out = torch.einsum("gcd,gdo->gco", book.float(), self.up_w.float()) + self.up_b.float()[:, None]
        return out.reshape(-1, self.dim)  # (G·C, D)
