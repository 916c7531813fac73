"""The MBC codebook: nearest-code quantization with a straight-through estimator (docs/DESIGN.md §1.2).

Training-time behaviour (:class:`Codebook`):

* each context vector is replaced by its nearest code (L2, computed in float32 even under
  autocast);
* loss = ||sg[z] - e||² + β·||z - sg[e]||² (mean over elements), β = 0.25;
* gradients reach ``z`` through the straight-through estimator ``sg[e] + (z - sg[z])`` (forward
  value exactly the code);
* code usage is an EMA of assignment counts (decay 0.99); codes whose usage falls below 1e-4
  are re-seeded with random context vectors of the current batch and their usage set to the
  mean usage ("online resetting").

With ``deferred`` set (the trainer sets it), forward only *collects* these statistics and the
trainer applies them once per optimizer step with :meth:`Codebook.apply_stats`, averaged over all
micro-batches of the step on all processes. Every micro-batch of a step then sees the same
codebook, so a step is the same computation whether its micro-batches run one after another
(gradient accumulation) or side by side on several processes.

The pure functions below are shared with the online worker (docs/DESIGN.md §3b): they return *new*
tensors and never modify their inputs, so a codebook version that stored codes refer to is
never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class QuantizeOutput:
    quantized: Tensor  # (..., D) straight-through: value of the codes, gradient of z
    codes: Tensor  # (...) int64 code indices
    loss: Tensor  # () codebook + commitment loss
    perplexity: Tensor  # () exp(entropy) of the batch's code histogram


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


@dataclass
class CodebookStats:
    """Statistics collected by a deferred codebook's training forwards since the last update."""

    counts: Tensor  # (C,) float32 assignments, summed over micro-batches
    sums: Tensor  # (C, D) float32 sums of the vectors assigned to each code
    batches: int  # micro-batches summed
    pool: list[Tensor]  # each micro-batch's context vectors (N, D): candidates for re-seeding dead codes


class Codebook(nn.Module):
    """C code vectors of size D with EMA usage tracking, dead-code reset and a version number.

    ``update="gradient"`` (the paper): code vectors are parameters trained by the codebook term of
    the loss. ``update="ema"``: code vectors follow an EMA k-means of the vectors assigned to them
    (decay ``usage_decay``) and the loss keeps only the commitment term — codes then track a
    drifting encoder every step (used by the from-scratch ``tiny`` preset).
    """

    usage: Tensor  # (C,) EMA of assignment counts
    version: Tensor  # () int64, names this codebook in stored code rows
    ema_size: Tensor  # (C,) EMA k-means cluster sizes (update="ema")
    ema_sum: Tensor  # (C, D) EMA k-means sums (update="ema")

    def __init__(
        self,
        num_codes: int,
        dim: int,
        beta: float = 0.25,
        usage_decay: float = 0.99,
        dead_threshold: float = 1e-4,
        update: str = "gradient",
    ) -> None:
        super().__init__()
        self.num_codes, self.dim, self.update = num_codes, dim, update
        self.beta, self.usage_decay, self.dead_threshold = beta, usage_decay, dead_threshold
        init = torch.empty(num_codes, dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        self.vectors = nn.Parameter(init, requires_grad=update == "gradient")
        self.register_buffer("usage", torch.zeros(num_codes))
        self.register_buffer("version", torch.zeros((), dtype=torch.int64))
        self.register_buffer("ema_size", torch.ones(num_codes))
        self.register_buffer("ema_sum", init.detach().clone())
        self.generator: torch.Generator | None = None  # dead-code picks; None = global RNG
        self.deferred = False  # collect statistics in forward; the caller applies them (apply_stats)
        self.pending: CodebookStats | None = None

    def forward(self, z: Tensor) -> QuantizeOutput:
        """Quantize ``z`` (..., D). In training mode also update usage (and EMA codes), reset dead codes
        — or, when ``deferred``, only collect the statistics for :meth:`apply_stats`."""
        flat = z.reshape(-1, self.dim)  # (N, D)
        codes = nearest_codes(flat, self.vectors)  # (N,)
        e = self.vectors[codes].to(z.dtype)  # (N, D)
        loss = (
            self.beta * F.mse_loss(flat, e.detach()) if self.update == "ema" else vq_loss(flat, e, self.beta)
        )
        ppl = perplexity(code_histogram(codes, self.num_codes))  # ()
        if self.training:
            counts, sums = assignment_stats(flat, codes, self.num_codes)
            if self.deferred:
                self._collect(counts, sums, flat.detach())
            else:
                self.apply_stats(counts, sums, lambda: flat)
        quantized = straight_through(flat, e).reshape(z.shape)
        return QuantizeOutput(quantized, codes.reshape(z.shape[:-1]), loss, ppl)

    def _collect(self, counts: Tensor, sums: Tensor, batch: Tensor) -> None:
        p = self.pending
        if p is None:
            self.pending = CodebookStats(counts, sums, 1, [batch])
        else:
            p.counts, p.sums, p.batches = p.counts + counts, p.sums + sums, p.batches + 1
            p.pool.append(batch)

    def take_pending(self) -> CodebookStats | None:
        """The statistics collected since the last call (None if no training forward ran)."""
        stats, self.pending = self.pending, None
        return stats

    @torch.no_grad()
    def apply_stats(self, counts: Tensor, sums: Tensor, pool: Callable[[], Tensor]) -> None:
        """Update usage (and EMA codes) from assignment counts (C,) and sums (C, D), then reset dead codes.

        ``pool`` returns the context vectors (N, D) to re-seed dead codes from. It is only called
        when some code is dead: for a distributed step it gathers every process's vectors.
        """
        vectors = self.vectors.data
        if self.update == "ema":
            state = EmaKMeansState(vectors.float(), self.ema_size, self.ema_sum)
            state = ema_kmeans_update(state, counts, sums, self.usage_decay)
            self.ema_size.copy_(state.cluster_size)
            self.ema_sum.copy_(state.embed_sum)
            vectors = state.vectors.to(vectors.dtype)
        usage = update_usage(self.usage, counts, self.usage_decay)
        if bool((usage < self.dead_threshold).any()):
            vectors, usage, replaced = reset_dead_codes(
                vectors, usage, pool(), self.dead_threshold, self.generator
            )
            if self.update == "ema" and replaced.numel():
                # a re-seeded code restarts its statistics from its new vector, with unit weight
                self.ema_size[replaced] = 1.0
                self.ema_sum[replaced] = vectors[replaced].float()
        self.vectors.data.copy_(vectors)
        self.usage.copy_(usage)

    @torch.no_grad()
    def set_codes(self, vectors: Tensor, usage: Tensor) -> None:
        """Replace every code (e.g. by k-means centroids) and its usage; EMA statistics follow."""
        self.vectors.data.copy_(vectors.to(self.vectors.dtype))
        self.usage.copy_(usage)
        self.ema_size.copy_(usage.clamp(min=1e-3))
        self.ema_sum.copy_(vectors.float() * self.ema_size[:, None])

    def lookup(self, codes: Tensor) -> Tensor:
        """Code vectors of ``codes`` (...) -> (..., D)."""
        return self.vectors[codes]
