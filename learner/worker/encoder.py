"""Turning document texts into context vectors with a trained checkpoint (tokenize + amortize).

The worker quantizes those vectors itself against the codebook *version* it currently follows
(:mod:`learner.worker.online_codebook`), not against the checkpoint's own codebook parameter, so
that online updates never change what stored codes mean (DESIGN.md §3b).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from infra.logging import get_logger

log = get_logger(__name__)


class TextEncoder(Protocol):
    """What the worker needs from a model: K context vectors of size D per document."""

    @property
    def k(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Tensor:
        """(N,) texts -> (N, K, D) float32 context vectors on :attr:`device`."""
        ...

    def initial_codebook(self) -> Tensor:
        """(C, D) codebook the model was trained with: the root version of a new store."""
        ...

    @property
    def device(self) -> torch.device: ...


class PoisonDocument(Exception):
    """A document the model cannot take (e.g. its text does not tokenize)."""


def pick_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when available; asking for CUDA without one falls back to CPU with a warning."""
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        log.warning("CUDA requested but not available; running on CPU")
        warnings.warn("CUDA requested but not available; running on CPU", RuntimeWarning, stacklevel=2)
    return torch.device("cpu")


@dataclass
class CheckpointEncoder:
    """A trained MBC checkpoint's amortization network, in eval mode, on one device."""

    model: Any  # learner.model.MBCModel
    texts: Any  # learner.batching.Encoder: tokenizes exactly as training did
    max_tokens: int
    _device: torch.device
    # The amortizer prepared for inference (learner.fast_attention); None: the model's own, autocast.
    fast: Callable[[Tensor, Tensor], Tensor] | None = None
    pad_to: int = 1  # pad token length up to a multiple of this (fewer shapes for torch.compile)

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        device: str = "auto",
        max_tokens: int | None = None,
        precision: str = "auto",
        compile: bool = False,
    ) -> CheckpointEncoder:
        """Load ``checkpoint`` on ``device``.

        ``precision``: ``auto`` (bf16 weights on CUDA, fp32 on CPU), ``bf16``, ``fp32`` or
        ``autocast`` (fp32 weights under bf16 autocast on CUDA: the slow path, kept for comparison).
        ``compile``: ``torch.compile`` the amortizer (GPU; the first batches of a shape compile).
        """
        from learner.batching import Encoder
        from learner.checkpoint import load_checkpoint, resolve_checkpoint
        from learner.fast_attention import inference_amortizer

        dev = pick_device(device)
        model, tokenizers, _meta = load_checkpoint(resolve_checkpoint(checkpoint), dev)
        model.eval()
        limit = min(max_tokens or model.config.max_doc_tokens, model.config.max_doc_tokens)
        fast = None
        if precision != "autocast":
            bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
            fast = inference_amortizer(model.amortizer, dev, bf16=bf16, compile=compile)
        return cls(model, Encoder(tokenizers, model.config), limit, dev, fast, 64 if compile else 1)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def k(self) -> int:
        return int(self.model.config.num_tokens)

    @property
    def dim(self) -> int:
        return int(self.model.codebook.dim)

    def initial_codebook(self) -> Tensor:
        return self.model.codebook.vectors.detach().float().clone()  # (C, D)

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        from learner.batching import pad

        seqs = [ids[: self.max_tokens] for ids in self.texts.documents(texts)]
        ids, mask = pad(seqs, self.texts.tok.amort_pad_id)  # (N, T), (N, T)
        extra = -ids.shape[1] % self.pad_to
        if extra:
            ids = torch.nn.functional.pad(ids, (0, extra), value=self.texts.tok.amort_pad_id)
            mask = torch.nn.functional.pad(mask, (0, extra), value=0)
        return ids, mask

    def check(self, text: str) -> None:
        """Raise :class:`PoisonDocument` if ``text`` cannot be encoded."""
        try:
            ids, _ = self.tokenize([text])
        except Exception as e:  # tokenizers raise many types for bad input
            raise PoisonDocument(f"tokenization failed: {e}") from e
        if ids.shape[1] == 0:
            raise PoisonDocument("text produced no tokens")

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Tensor:
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        if self.fast is not None:
            return self.fast(ids, mask).float()  # (N, K, D)
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        with autocast:
            z = self.model.amortize(ids, mask)  # (N, K, D)
        return z.float()
