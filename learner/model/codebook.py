"""The MBC codebook module: nearest-code quantization with a straight-through estimator (docs/DESIGN.md §1.2).

Training-time behaviour (:class:`Codebook`):

* each vector is replaced by its nearest code (L2, computed in float32 even under autocast);
* loss = ||sg[z] - e||² + β·||z - sg[e]||² (mean over elements), β = 0.25 (``update="ema"``: the
  commitment term only, codes follow an EMA k-means);
* gradients reach ``z`` through the straight-through estimator ``sg[e] + (z - sg[z])`` (forward
  value exactly the code);
* code usage is an EMA of assignment counts (decay 0.99); codes whose usage falls below 1e-4
  are re-seeded with random vectors of the current batch and their usage set to the mean usage
  ("online resetting").

Two forms. **Raw** (no code space; the papers, the ``tiny`` preset): one code of C per context
vector, codes are D-vectors, memory rows are the codes themselves. **Code space**
(:mod:`learner.model.code_space`; the ``smollm2-135m`` preset): each context vector becomes G
standardized, projected, l2-normalised vectors of size d, each quantized in its own block of C
codes (product quantization); a document stores K·G *flat* indices g·C + c into a table of G·C
codes, and memory rows are the codes decoded to D by their group's map. Everything downstream —
bit-packed storage, counts per (version, code), exact aggregation — sees a codebook of G·C rows and
K·G codes per document, and stays exact. With ``code_combine="sum"`` a vector's G decoded codes add up
to one row (product quantization proper, :mod:`learner.model.code_space`): K rows per document, decoded
per document (:meth:`Codebook.document_rows`), no per-code rows and no counts aggregation.

With ``deferred`` set (the trainer sets it), forward only *collects* the statistics and the
trainer applies them once per optimizer step with :meth:`Codebook.apply_stats`, averaged over all
micro-batches of the step on all processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from learner.model.code_space import CodeSpace
from learner.model.codebook_math import (
    EmaKMeansState,
    assignment_stats,
    code_histogram,
    ema_kmeans_update,
    grouped_nearest,
    grouped_perplexity,
    reset_dead_codes_grouped,
    straight_through,
    update_usage,
    vq_loss,
)
from learner.model.kmeans import kmeans


@dataclass
class QuantizeOutput:
    quantized: Tensor  # (N, R, D) memory rows (R = K·G, or K summed): value of the codes, gradient of z
    codes: Tensor  # (N, K·G) int64 flat code indices
    loss: Tensor  # () codebook + commitment loss
    perplexity: Tensor  # () exp(entropy) of the batch's code histogram (mean over groups)


@dataclass
class CodebookStats:
    """Statistics collected by a deferred codebook's training forwards since the last update."""

    counts: Tensor  # (G·C,) float32 assignments, summed over micro-batches
    sums: Tensor  # (G·C, d) float32 sums of the vectors assigned to each code
    batches: int  # micro-batches summed
    pool: list[Tensor]  # each micro-batch's code-space vectors (M, G, d): candidates for re-seeding


class Codebook(nn.Module):
    """G blocks of C code vectors of size d with EMA usage tracking, dead-code reset and a version number.

    ``update="gradient"`` (the paper): code vectors are parameters trained by the codebook term of
    the loss. ``update="ema"``: code vectors follow an EMA k-means of the vectors assigned to them
    (decay ``usage_decay``) and the loss keeps only the commitment term. ``space`` (optional) is the
    code space; without it G = 1 and d = D.
    """

    usage: Tensor  # (G·C,) EMA of assignment counts
    version: Tensor  # () int64, names this codebook in stored code rows
    ema_size: Tensor  # (G·C,) EMA k-means cluster sizes (update="ema")
    ema_sum: Tensor  # (G·C, d) EMA k-means sums (update="ema")

    def __init__(
        self,
        num_codes: int,
        dim: int,
        beta: float = 0.25,
        usage_decay: float = 0.99,
        dead_threshold: float = 1e-4,
        update: str = "gradient",
        space: CodeSpace | None = None,
    ) -> None:
        super().__init__()
        self.num_codes, self.dim, self.update = num_codes, dim, update  # C per group, D
        self.beta, self.usage_decay, self.dead_threshold = beta, usage_decay, dead_threshold
        self.space = space
        self.groups = space.groups if space is not None else 1
        self.code_dim = space.code_dim if space is not None else dim
        self.cosine = bool(space is not None and space.cosine)
        total = self.groups * num_codes
        init = torch.empty(total, self.code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if self.cosine:
            init = F.normalize(torch.randn(total, self.code_dim), dim=-1)
        self.vectors = nn.Parameter(init, requires_grad=update == "gradient")
        self.register_buffer("usage", torch.zeros(total))
        self.register_buffer("version", torch.zeros((), dtype=torch.int64))
        self.register_buffer("ema_size", torch.ones(total))
        self.register_buffer("ema_sum", init.detach().clone())
        self.generator: torch.Generator | None = None  # dead-code picks; None = global RNG
        self.deferred = False  # collect statistics in forward; the caller applies them (apply_stats)
        self.frozen = False  # codes, code-space statistics and usage stay as they are, even in training
        self.pending: CodebookStats | None = None

    @property
    def total_codes(self) -> int:
        """Rows of the stored codebook: G·C (what stored code indices point into)."""
        return self.groups * self.num_codes

    # -- the code space ------------------------------------------------------------------------------

    def project(self, z: Tensor) -> Tensor:
        """Context vectors (N, K, D) -> code-space vectors (N, K, G, d)."""
        return z.unsqueeze(-2) if self.space is None else self.space(z)

    @property
    def per_code_rows(self) -> bool:
        """Every code decodes to a memory row of its own (raw, and the code space's ``rows``): a bank is
        a count per (version, code). False for ``code_combine="sum"``: rows are per document."""
        return self.space is None or self.space.combine == "rows"

    def decode(self, e: Tensor) -> Tensor:
        """Code-space vectors (N, K, G, d) -> memory rows (N, R, D): R = K·G, or K when summed."""
        if self.space is None:
            return e.flatten(1, 2)
        rows = self.space.decode(e)  # (N, K, G, D), or (N, K, D) summed
        return rows if self.space.combine == "sum" else rows.flatten(1, 2)

    def memory_rows(self, vectors: Tensor | None = None) -> Tensor:
        """A stored codebook (G·C, d) — this one by default — as the memory rows (G·C, D) it decodes to
        (only with :attr:`per_code_rows`)."""
        v = self.vectors.detach() if vectors is None else vectors
        return v.float() if self.space is None else self.space.rows(v)

    def code_rows(self, vectors: Tensor | None = None) -> Tensor:
        """One D-dimensional row per code (G·C, D) in every mode — the memory row of a per-code-row
        codebook, a summed code's own contribution (:meth:`CodeSpace.code_rows`) — what learned
        document keys average (:mod:`learner.keys`)."""
        v = self.vectors.detach() if vectors is None else vectors
        return v.float() if self.space is None else self.space.code_rows(v)

    def document_rows(self, codes: Tensor, vectors: Tensor | None = None) -> Tensor:
        """Memory rows (N, R, D) of documents stored as flat code indices ``codes`` (N, K·G) against a
        stored codebook (G·C, d) — this one by default."""
        if self.per_code_rows:
            return self.memory_rows(vectors)[codes.to(self.vectors.device)]  # (N, K·G, D)
        book = (self.vectors.detach() if vectors is None else vectors).float()
        e = book[codes.to(book.device)]  # (N, K·G, d)
        return self.decode(e.view(codes.shape[0], -1, self.groups, self.code_dim))  # (N, K, D)

    @torch.no_grad()
    def encode(self, z: Tensor, vectors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """THE inference-time quantization (eval, worker, ask): context vectors (N, K, D) against a
        stored codebook (G·C, d) -> flat code indices (N, K·G) int64 and squared errors in the code
        space (N, K·G) float32. No usage tracking."""
        book = (self.vectors if vectors is None else vectors).float()
        x = self.project(z).float()  # (N, K, G, d)
        flat = x.reshape(-1, self.groups, x.shape[-1])  # (M, G, d)
        codes = grouped_nearest(flat, book)  # (M, G)
        err = ((flat - book[codes]) ** 2).sum(-1)  # (M, G)
        n = z.shape[0]
        return codes.reshape(n, -1), err.reshape(n, -1)

    # -- training ------------------------------------------------------------------------------------

    def forward(self, z: Tensor) -> QuantizeOutput:
        """Quantize context vectors ``z``: (N, K, D) with a code space, any (..., D) for a raw codebook.
        In training mode also update the code space's statistics, usage (and EMA codes), reset dead
        codes — or, when ``deferred``, only collect them."""
        if self.space is None:
            flat = z.reshape(-1, 1, z.shape[-1])  # (M, 1, D)
        else:
            if self.training and not self.frozen and self.space.standardize:
                self.space.update_stats(z)
            flat = self.space(z).flatten(0, 1)  # (M, G, d), M = N·K
        g, d = flat.shape[1], flat.shape[2]
        codes = grouped_nearest(flat, self.vectors)  # (M, G) flat indices
        e = self.vectors[codes].to(flat.dtype)  # (M, G, d)
        pairs, chosen = flat.reshape(-1, d), e.reshape(-1, d)
        if self.update == "ema":
            loss = self.beta * F.mse_loss(pairs, chosen.detach())
        else:
            loss = vq_loss(pairs, chosen, self.beta)
        ppl = grouped_perplexity(code_histogram(codes, self.total_codes), g)
        if self.training and not self.frozen:
            counts, sums = assignment_stats(pairs, codes.reshape(-1), self.total_codes)
            if self.deferred:
                self._collect(counts, sums, flat.detach())
            else:
                self.apply_stats(counts, sums, lambda: flat.detach())
        st = straight_through(flat, e)  # (M, G, d)
        if self.space is None:
            return QuantizeOutput(st.reshape(z.shape), codes.reshape(z.shape[:-1]), loss, ppl)
        n, k = z.shape[0], z.shape[1]
        quantized = self.decode(st.reshape(n, k, g, d))  # (N, R, D)
        return QuantizeOutput(quantized, codes.reshape(n, k * g), loss, ppl)

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
        """Update usage (and EMA codes) from assignment counts (G·C,) and sums (G·C, d), then reset dead codes.

        ``pool`` returns code-space vectors (M, G, d) — or (M, d) for a raw codebook — to re-seed dead
        codes from (group g's codes from the vectors' group g). It is only called when some code is
        dead: for a distributed step it gathers every process's vectors.
        """
        vectors = self.vectors.data
        if self.update == "ema":
            state = EmaKMeansState(vectors.float(), self.ema_size, self.ema_sum)
            state = ema_kmeans_update(state, counts, sums, self.usage_decay)
            self.ema_size.copy_(state.cluster_size)
            self.ema_sum.copy_(state.embed_sum)
            vectors = state.vectors.to(vectors.dtype)
            if self.cosine:
                vectors = F.normalize(vectors, dim=-1)
        usage = update_usage(self.usage, counts, self.usage_decay)
        if bool((usage < self.dead_threshold).any()):
            vectors, usage = self._reset(vectors, usage, pool())
        self.vectors.data.copy_(vectors)
        self.usage.copy_(usage)

    def _reset(self, vectors: Tensor, usage: Tensor, pool: Tensor) -> tuple[Tensor, Tensor]:
        """Dead codes of each group re-seeded from that group's pool vectors."""
        pool = pool.reshape(-1, self.groups, self.code_dim)  # (M, G, d)
        new_v, new_u, replaced = reset_dead_codes_grouped(
            vectors, usage, pool, self.dead_threshold, self.generator
        )
        if self.update == "ema" and replaced.numel():
            # a re-seeded code restarts its statistics from its new vector, with unit weight
            self.ema_size[replaced] = 1.0
            self.ema_sum[replaced] = new_v[replaced].float()
        return new_v, new_u

    @torch.no_grad()
    def set_codes(self, vectors: Tensor, usage: Tensor) -> None:
        """Replace every code (G·C, d) (e.g. by k-means centroids) and its usage; EMA statistics follow."""
        self.vectors.data.copy_(vectors.to(self.vectors.dtype))
        self.usage.copy_(usage)
        self.ema_size.copy_(usage.clamp(min=1e-3))
        self.ema_sum.copy_(vectors.float() * self.ema_size[:, None])

    @torch.no_grad()
    def init_from_context(self, z: Tensor, per_step: int, seed: int, iters: int = 10) -> None:
        """k-means initialisation from real context vectors (N, K, D): the code space's statistics from
        them, then each group's C codes the centroids of its vectors; usage = each code's share of
        the ``per_step`` vectors a training step quantizes per group."""
        if self.space is not None and self.space.standardize:
            self.space.set_stats(z)
        x = self.project(z.to(self.vectors.device)).float()  # (N, K, G, d)
        x = x.reshape(-1, self.groups, x.shape[-1]).cpu()  # (M, G, d)
        generator = torch.Generator().manual_seed(seed)
        books, usages = [], []
        for g in range(self.groups):
            centroids, counts = kmeans(x[:, g], self.num_codes, iters, generator, spherical=self.cosine)
            books.append(centroids)
            usages.append(counts / counts.sum().clamp_min(1.0) * per_step)
        device = self.vectors.device
        self.set_codes(torch.cat(books).to(device), torch.cat(usages).to(device))

    def lookup(self, codes: Tensor) -> Tensor:
        """Memory rows of flat code indices ``codes`` (N, K·G) with this codebook -> (N, R, D)."""
        return self.document_rows(codes).to(codes.device)
