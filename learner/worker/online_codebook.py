"""The codebook the worker quantizes with, and its online maintenance (docs/DESIGN.md §3b).

The worker always quantizes against one stored codebook *version*. With ``--codebook ema`` it
also accumulates, per code, how many context vectors it assigned there and their sum; every
``publish_every_docs`` documents it derives a NEW version from the newest stored one — an EMA
k-means step with those statistics, then dead-code resets from a reservoir of recent vectors —
and publishes it as the child of that newest version with a compare-and-set. Stored versions
are never modified; codes always name the version that produced them.

Several workers in one consumer group need no leader: each publishes children of the newest
version (losing a race means reloading the newest and retrying with the same statistics), and
each follows the newest version for quantization. The history stays one linear chain (enforced
by the store's unique parent index).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from infra.logging import get_logger
from learner.errors import CheckpointError
from learner.model.codebook import Codebook
from learner.model.codebook_math import (
    EmaKMeansState,
    ema_kmeans_update,
    grouped_perplexity,
    quantize,
    reset_dead_codes_grouped,
)
from memory_store.errors import CodebookConflict, StoreUnavailable
from memory_store.protocol import Store
from memory_store.records import CodebookHealth

log = get_logger(__name__)
PUBLISHED_KEPT = 1_000


@dataclass
class VersionState:
    """A stored version as the worker uses it."""

    version: int
    vectors: Tensor  # (C, D) float32 on the worker's device
    usage: Tensor  # (C,) EMA of assignments per batch (also the EMA cluster size)
    groups: int  # G as stored with the version: what its documents' codes are packed by
    resets: int | None = None  # dead codes re-seeded when this version was derived (kept in its health)
    origin: str | None = None  # "checkpoint" or "ema"


@dataclass
class Observations:
    """What the worker saw since it last published (or since it switched version)."""

    counts: Tensor  # (G·C,) assignments per code
    sums: Tensor  # (G·C, d) sum of the assigned code-space vectors (d = D for a raw codebook)
    batches: int = 0
    docs: int = 0
    vectors: int = 0
    sq_error: float = 0.0
    reservoir: list[Tensor] = field(default_factory=list)  # recent (n, G, d) chunks, for dead-code resets

    @classmethod
    def empty(cls, num_codes: int, dim: int, device: torch.device) -> Observations:
        return cls(torch.zeros(num_codes, device=device), torch.zeros(num_codes, dim, device=device))


class OnlineCodebook:
    """Quantize against the current version; optionally publish EMA-updated versions."""

    def __init__(
        self,
        store: Store,
        device: torch.device,
        mode: Literal["frozen", "ema"] = "frozen",
        decay: float = 0.99,
        dead_threshold: float = 1e-4,
        publish_every_docs: int = 2_000,
        reservoir_size: int = 4_096,
        follow_every_s: float = 5.0,
        seed: int = 0,
        book: Codebook | None = None,
    ) -> None:
        """``book``: the checkpoint's codebook module, whose code space (if any) maps context vectors to
        what stored versions hold (:mod:`learner.model.code_space`); None: a raw codebook of D-vectors."""
        self.store, self.device, self.mode = store, device, mode
        self.book = book
        self.groups = book.groups if book is not None else 1
        self.cosine = bool(book is not None and book.cosine)
        self.decay, self.dead_threshold = decay, dead_threshold
        self.publish_every_docs, self.reservoir_size = publish_every_docs, reservoir_size
        self.follow_every_s = follow_every_s
        self.generator = torch.Generator().manual_seed(seed)
        self.state: VersionState | None = None
        self.obs: Observations | None = None
        self._last_follow = 0.0
        # the newest versions this worker published (bounded: one more every publish_every_docs
        # documents, for a worker that runs for months)
        self.published: deque[int] = deque(maxlen=PUBLISHED_KEPT)
        self._groups: dict[int, int] = {}  # version -> its stored G (versions never change)
        # The pipelined worker quantizes batch n + 1 (encode thread) while it observes batch n and
        # may publish (write thread): hold this around anything that reads or replaces the state.
        self.lock = threading.RLock()

    # -- versions -------------------------------------------------------------------------------

    def bootstrap(self, initial_vectors: Tensor, initial_usage: Tensor | None = None) -> int:
        """Start from the newest stored version; publish ``initial_vectors`` as the root if none."""
        latest = self.store.latest_codebook_version()
        if latest is None:
            usage = initial_usage if initial_usage is not None else torch.ones(initial_vectors.shape[0])
            health = CodebookHealth(
                resets=0, extra={"ema_usage": usage.float().cpu().tolist(), "origin": "checkpoint"}
            )
            try:
                latest = self.store.add_codebook_version(
                    initial_vectors.float().cpu().numpy(),
                    parent=None,
                    health=health,
                    expect_latest=True,
                    groups=self.groups,
                )
                log.info("published the checkpoint's codebook as the root version", version=latest)
            except CodebookConflict:
                latest = self.store.latest_codebook_version()
        assert latest is not None
        self._load(latest)
        return latest

    @property
    def version(self) -> int:
        assert self.state is not None, "bootstrap() first"
        return self.state.version

    @property
    def num_codes(self) -> int:
        assert self.state is not None, "bootstrap() first"
        return int(self.state.vectors.shape[0])

    def groups_of(self, version: int) -> int:
        """G stored with ``version`` (one this codebook loaded or published): what its codes pack by."""
        return self._groups[version]

    def _load(self, version: int) -> None:
        cb = self.store.get_codebook(version)
        if cb.info.groups not in (1, self.groups):  # G = 1: global indices, right for any model's codes
            raise CheckpointError(
                f"codebook version {version} is stored with {cb.info.groups} groups; this checkpoint "
                f"quantizes in {self.groups}"
            )
        vectors = torch.from_numpy(np.ascontiguousarray(cb.vectors)).to(self.device)  # (C, D)
        raw_usage = (cb.info.health.extra or {}).get("ema_usage")
        if isinstance(raw_usage, list) and len(raw_usage) == vectors.shape[0]:
            usage = torch.tensor(raw_usage, dtype=torch.float32, device=self.device)
        else:
            usage = torch.ones(vectors.shape[0], device=self.device)
        health = cb.info.health
        origin = (health.extra or {}).get("origin")
        self._groups[version] = cb.info.groups
        self.state = VersionState(
            version,
            vectors,
            usage,
            cb.info.groups,
            health.resets,
            origin if isinstance(origin, str) else None,
        )
        if self.obs is None:
            self.obs = Observations.empty(vectors.shape[0], vectors.shape[1], self.device)

    def follow(self, force: bool = False) -> int:
        """Switch to the newest stored version (checked at most every ``follow_every_s``)."""
        now = time.monotonic()
        if force or now - self._last_follow >= self.follow_every_s:
            self._last_follow = now
            latest = self.store.latest_codebook_version()
            if latest is not None and latest != self.version:
                log.info("following newer codebook version", old=self.version, new=latest)
                self._load(latest)
        return self.version

    # -- per batch ------------------------------------------------------------------------------

    def _encode(self, z: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor]:
        """(N, K, D) context vectors -> (N, K·G) codes and (N, K·G) squared quantization errors."""
        if self.book is None:
            return quantize(z, vectors)
        return self.book.encode(z, vectors)

    def _code_space(self, z: Tensor) -> Tensor:
        """(N, K, D) context vectors -> (N·K, G, d) code-space vectors (what the codes approximate)."""
        if self.book is None:
            return z.reshape(-1, 1, z.shape[-1]).float()
        return self.book.project(z).float().flatten(0, 1)

    @torch.no_grad()
    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(N, K, D) context vectors -> (N, K·G) codes and (N, K·G) squared quantization errors."""
        assert self.state is not None
        return self._encode(z, self.state.vectors)

    @torch.no_grad()
    def quantize_current(self, z: Tensor) -> tuple[int, Tensor, Tensor]:
        """Follow the newest version, then quantize (N, K, D) ``z`` against it -> (the version,
        codes (N, K), squared errors (N, K)); the version and its vectors are read together."""
        with self.lock:
            try:
                self.follow()
            except StoreUnavailable as e:  # following can wait; the version in use stays valid
                log.warning(
                    "could not check for a newer codebook version",
                    error=(str(e).splitlines() or [type(e).__name__])[0][:200],
                )
            assert self.state is not None
            state = self.state  # stored versions never change: the snapshot stays valid unlocked
        codes, err = self._encode(z, state.vectors)
        return state.version, codes, err

    @torch.no_grad()
    def observe(self, z: Tensor, codes: Tensor, sq_error: Tensor, version: int | None = None) -> None:
        """Record one batch: health figures always, EMA statistics in ``ema`` mode.

        ``version``: the version ``codes`` were quantized against; when the worker has moved on to
        another version since (a publication between the encode and the store of a pipelined
        batch), ``z`` is quantized again against the version in use, so that the statistics always
        describe the codes of the version they are folded into."""
        assert self.state is not None and self.obs is not None
        if version is not None and version != self.state.version:
            codes, sq_error = self._encode(z, self.state.vectors)
        rows = self._code_space(z)  # (N·K, G, d)
        flat = rows.reshape(-1, rows.shape[-1])  # (N·K·G, d), in the order of codes (N, K·G)
        idx = codes.reshape(-1)
        o = self.obs
        o.counts += torch.bincount(idx, minlength=o.counts.shape[0]).float()
        if self.mode == "ema":
            o.sums.index_add_(0, idx, flat)
            o.reservoir.append(
                rows[torch.randperm(rows.shape[0], generator=self.generator)[:256].to(rows.device)]
            )
            while sum(r.shape[0] for r in o.reservoir) > self.reservoir_size:
                o.reservoir.pop(0)
        o.batches += 1
        o.docs += z.shape[0]
        o.vectors += flat.shape[0]
        o.sq_error += float(sq_error.sum())

    def due(self) -> bool:
        return self.obs is not None and self.obs.docs >= self.publish_every_docs

    def publish(self) -> int | None:
        """Fold the observations into a new version (``ema``) or refresh health (``frozen``)."""
        assert self.state is not None and self.obs is not None
        o = self.obs
        observed_version = self.state.version
        health_now = self._health(o, self.state)
        if self.mode == "frozen":
            self.store.update_codebook_health(self.state.version, health_now)
            self.obs = self._fresh_observations(self.state.vectors)
            return None
        while True:
            latest = self.store.latest_codebook_version()
            assert latest is not None
            if latest != self.state.version:
                self._load(latest)
            base = self.state
            # the stored usage is the EMA cluster size, so the sums are the vectors weighted by it
            ema = EmaKMeansState(base.vectors, base.usage, base.vectors * base.usage[:, None])
            ema = ema_kmeans_update(ema, o.counts, o.sums, self.decay, batches=o.batches)
            vectors, usage = ema.vectors, ema.cluster_size
            if self.cosine:  # codes stay unit vectors (learner.model.code_space)
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            resets = 0
            if o.reservoir:
                pool = torch.cat(o.reservoir)  # (R, G, d)
                vectors, usage, replaced = reset_dead_codes_grouped(
                    vectors, usage, pool, self.dead_threshold, self.generator
                )
                resets = int(replaced.numel())
            dead_after = int((usage < self.dead_threshold).sum())
            health = CodebookHealth(
                resets=resets,
                dead_codes=dead_after,
                extra={"ema_usage": usage.cpu().tolist(), "origin": "ema", "observed_docs": o.docs},
            )
            try:
                new = self.store.add_codebook_version(  # the checkpoint's G, even below a G = 1 version
                    vectors.cpu().numpy(),
                    parent=base.version,
                    health=health,
                    expect_latest=True,
                    groups=self.groups,
                )
            except CodebookConflict:
                log.info("another worker published first; rebasing onto the newest version")
                continue
            break
        self.store.update_codebook_health(observed_version, health_now)
        self._groups[new] = self.groups
        self.state = VersionState(new, vectors, usage, self.groups, resets, "ema")
        self.obs = self._fresh_observations(vectors)
        self.published.append(new)
        log.info("published codebook version", version=new, parent=base.version, resets=resets)
        return new

    def record_health(self) -> bool:
        """Write the health of the version in use as measured since the last publication, without
        publishing anything (the worker calls this when it stops, so that the last version's health is
        not lost with the observations). False when there was nothing observed."""
        if self.state is None or self.obs is None or self.obs.docs == 0:
            return False
        self.store.update_codebook_health(self.state.version, self._health(self.obs, self.state))
        return True

    def _fresh_observations(self, vectors: Tensor) -> Observations:
        return Observations.empty(int(vectors.shape[0]), int(vectors.shape[1]), self.device)

    def _health(self, o: Observations, state: VersionState) -> CodebookHealth:
        """Health of ``state``'s version as measured on what this worker observed."""
        extra: dict[str, object] = {
            "ema_usage": state.usage.cpu().tolist(),
            "mean_quantization_error": o.sq_error / o.vectors if o.vectors else None,
            "observed_docs": o.docs,
        }
        if state.origin is not None:
            extra["origin"] = state.origin
        return CodebookHealth(
            perplexity=float(grouped_perplexity(o.counts, self.groups)),
            dead_codes=int((state.usage < self.dead_threshold).sum()),
            resets=state.resets,  # fixed when the version was derived; replacing the health keeps it
            extra=extra,
        )
