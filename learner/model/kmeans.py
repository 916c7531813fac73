"""Lloyd's k-means on the rows of a matrix: the codebook's initialisation from real context vectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learner.model.codebook_math import nearest_codes


@torch.no_grad()
def kmeans(
    x: torch.Tensor, k: int, iters: int, generator: torch.Generator, spherical: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``x`` (N, D) -> (centroids (k, D), cluster sizes (k,)); empty clusters re-seeded.

    With fewer rows than ``k`` the rows are sampled with replacement and jittered. ``spherical``:
    rows and centroids are unit vectors (the cosine codebook), centroids re-normalised each round.
    """
    x = x.detach().float().cpu()
    if x.shape[0] < k:
        x = x[torch.randint(0, x.shape[0], (k,), generator=generator)] + 1e-3 * torch.randn(
            k, x.shape[1], generator=generator
        )
        if spherical:
            x = F.normalize(x, dim=-1)
    centroids = x[torch.randperm(x.shape[0], generator=generator)[:k]].clone()  # (k, D)
    counts = torch.zeros(k)
    for _ in range(iters):
        assign = nearest_codes(x, centroids)  # (N,)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        if spherical:
            centroids = F.normalize(centroids, dim=-1)
        empty = int((~filled).sum())
        if empty:
            centroids[~filled] = x[torch.randint(0, x.shape[0], (empty,), generator=generator)]
    return centroids, counts
