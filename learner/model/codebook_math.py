"""The codebook's arithmetic (docs/DESIGN.md §1.2): nearest codes, VQ loss, straight-through, EMA k-means,
usage, dead-code resets, perplexity, inference quantization. The module that uses them is
:class:`learner.model.codebook.Codebook`.

These pure functions are shared with the online worker (docs/DESIGN.md §3b): they return *new*
tensors and never modify their inputs, so a codebook version that stored codes refer to is
never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def nearest_codes(z: Tensor, vectors: Tensor) -> Tensor:
    """Index of the nearest code (L2) for every row of ``z``: (N, D), (C, D) -> (N,) int64.

    Distances are computed in float32 with autocast off; the expanded form
    ||z||² - 2 z·e + ||e||² ranks the candidates, and the two best are re-scored with the
    direct difference so that near-ties resolve exactly as a brute-force search would.
    """
    with torch.autocast(device_type=z.device.type, enabled=False):
        zf = z.detach().float()  # (N, D)
        ef = vectors.detach().float()  # (C, D)
        d = (zf * zf).sum(1, keepdim=True) - 2.0 * zf @ ef.t() + (ef * ef).sum(1)[None, :]  # (N, C)
        k = min(2, ef.shape[0])
        cand = d.topk(k, dim=1, largest=False).indices.sort(dim=1).values  # (N, k) ascending index
        exact = ((zf[:, None, :] - ef[cand]) ** 2).sum(-1)  # (N, k)
        best = exact.argmin(dim=1, keepdim=True)  # first minimum = lowest index on exact ties
        return cand.gather(1, best).squeeze(1)


def vq_loss(z: Tensor, e: Tensor, beta: float) -> Tensor:
    """||sg[z] - e||² + β·||z - sg[e]||², each a mean over elements."""
    return F.mse_loss(e, z.detach()) + beta * F.mse_loss(z, e.detach())


def straight_through(z: Tensor, e: Tensor) -> Tensor:
    """Forward value exactly ``e``, gradient the identity to ``z`` (``z - sg[z]`` is exactly zero)."""
    return e.detach() + (z - z.detach())


def code_histogram(codes: Tensor, num_codes: int) -> Tensor:
    """Counts of each code in ``codes`` (any shape) -> (C,) float32."""
    return torch.bincount(codes.reshape(-1), minlength=num_codes).float()


def update_usage(usage: Tensor, counts: Tensor, decay: float) -> Tensor:
    """EMA of assignment counts: decay·usage + (1 - decay)·counts (new tensor)."""
    return usage * decay + counts.to(usage.dtype) * (1.0 - decay)


def reset_dead_codes(
    vectors: Tensor, usage: Tensor, batch: Tensor, threshold: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Re-seed codes with usage < ``threshold`` from random rows of ``batch`` (N, D).

    Returns (new_vectors, new_usage, replaced) where ``replaced`` holds the re-seeded code
    indices: the first min(#dead, N) dead codes in index order. Their usage becomes the mean
    usage (taken before the reset). Inputs are not modified.
    """
    dead = torch.nonzero(usage < threshold).squeeze(1)  # (n_dead,)
    n = min(int(dead.numel()), int(batch.shape[0]))
    new_vectors, new_usage = vectors.clone(), usage.clone()
    if n == 0:
        return new_vectors, new_usage, dead[:0]
    pick = torch.randperm(batch.shape[0], generator=generator, device="cpu")[:n].to(batch.device)
    replaced = dead[:n]
    new_vectors[replaced] = batch[pick].detach().to(vectors.dtype)
    new_usage[replaced] = usage.mean()
    return new_vectors, new_usage, replaced


@dataclass
class EmaKMeansState:
    """Running statistics of an EMA k-means codebook."""

    vectors: Tensor  # (C, D)
    cluster_size: Tensor  # (C,) EMA of assignment counts
    embed_sum: Tensor  # (C, D) EMA of the sums of assigned vectors


def assignment_stats(batch: Tensor, codes: Tensor, num_codes: int) -> tuple[Tensor, Tensor]:
    """(n_c (C,), Σ_{z→c} z (C, D)) in float32: how many rows of ``batch`` (N, D) each code got, and their sum."""
    x = batch.detach().float()  # (N, D)
    onehot = F.one_hot(codes, num_codes).float()  # (N, C)
    return onehot.sum(0), onehot.t() @ x


def ema_kmeans_update(
    state: EmaKMeansState, counts: Tensor, sums: Tensor, decay: float, batches: int = 1, eps: float = 1e-5
) -> EmaKMeansState:
    """THE codebook EMA rule, used by training and by the online worker; returns a NEW state.

    ``counts`` (C,) and ``sums`` (C, D) were gathered over ``batches`` equal mini-batches (the
    worker folds many batches at once; training passes one step's mean, ``batches`` = 1). With
    g = decay**batches:

        N_c <- g N_c + (1-g) n_c / batches ;  m_c <- g m_c + (1-g) Σ_{z→c} z / batches
        e_c  = m_c / Ñ_c,  Laplace smoothing  Ñ_c = (N_c + ε) / (Σ N + C ε) · Σ N

    A code that received nothing keeps its vector (its size and sum decay), so an unused code
    never drifts towards zero; the dead-code reset re-seeds it instead. Inputs are untouched.
    """
    b = float(max(batches, 1))
    g = decay**b
    c = state.vectors.shape[0]
    size = state.cluster_size * g + counts / b * (1.0 - g)  # (C,)
    embed_sum = state.embed_sum * g + sums / b * (1.0 - g)  # (C, D)
    total = size.sum()
    smoothed = (size + eps) / (total + c * eps) * total  # (C,)
    hit = counts > 0  # (C,)
    vectors = torch.where(hit[:, None], embed_sum / smoothed.clamp_min(1e-12)[:, None], state.vectors)
    return EmaKMeansState(vectors, size, embed_sum)


def perplexity(counts: Tensor) -> Tensor:
    """exp(entropy) of a code histogram (C,): the number of codes in effective use; 0 when empty."""
    total = counts.sum()
    p = counts.float() / total.clamp_min(1e-12)  # (C,)
    return torch.where(
        total > 0, torch.exp(-torch.special.xlogy(p, p).sum()), torch.zeros((), device=p.device)
    )


def quantize(z: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor]:
    """THE inference-time quantization (eval, worker, ask): context vectors (..., D) against a codebook
    (C, D) -> code indices (...) int64 and squared L2 errors (...) float32. No usage tracking."""
    flat = z.reshape(-1, z.shape[-1]).float()  # (N, D)
    codes = nearest_codes(flat, vectors)  # (N,)
    err = ((flat - vectors[codes].float()) ** 2).sum(-1)  # (N,)
    return codes.view(z.shape[:-1]), err.view(z.shape[:-1])


def grouped_nearest(x: Tensor, vectors: Tensor) -> Tensor:
    """Product quantization: group g of every row of ``x`` (M, G, d) against the g-th block of C codes of
    ``vectors`` (G·C, d) -> *flat* code indices g·C + c (M, G) int64 (exact, as :func:`nearest_codes`)."""
    g = x.shape[1]
    c = vectors.shape[0] // g
    out = [nearest_codes(x[:, i], vectors[i * c : (i + 1) * c]) + i * c for i in range(g)]
    return torch.stack(out, dim=1)  # (M, G)


def grouped_perplexity(counts: Tensor, groups: int) -> Tensor:
    """Mean over groups of each group's perplexity: counts (G·C,) -> (); the codes in use per group."""
    return torch.stack([perplexity(h) for h in counts.reshape(groups, -1)]).mean()


def reset_dead_codes_grouped(
    vectors: Tensor,
    usage: Tensor,
    pool: Tensor,
    threshold: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`reset_dead_codes` for G blocks of C codes (``vectors`` (G·C, d), ``usage`` (G·C,)): group
    g's dead codes are re-seeded from ``pool[:, g]`` (M, G, d). Returns (vectors, usage, replaced flat
    indices); inputs untouched. G = 1 is exactly :func:`reset_dead_codes`."""
    groups = pool.shape[1]
    c = vectors.shape[0] // groups
    new_v, new_u, replaced = vectors.clone(), usage.clone(), []
    for g in range(groups):
        block = slice(g * c, (g + 1) * c)
        v, u, r = reset_dead_codes(vectors[block], usage[block], pool[:, g], threshold, generator)
        new_v[block], new_u[block] = v, u
        replaced.append(r + g * c)
    return new_v, new_u, torch.cat(replaced)
