"""THE text -> context vectors -> codes path, used by evaluation, the worker, `mbc ask` and the demo.

:class:`DocumentEncoder` tokenizes documents exactly as training did and amortizes them
(tokenize + amortize); :meth:`learner.model.codebook.Codebook.encode` turns the vectors into codes
against a given codebook. The worker quantizes against the codebook *version* it follows
(:mod:`learner.worker.online_codebook`), evaluation against the checkpoint's own codebook, so
that online updates never change what stored codes mean (docs/DESIGN.md §3b).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from learner.inference.device import pick_device
from learner.model.codebook import Codebook
from learner.model.mbc import MBCModel
from learner.text.batching import TextBatcher, pad
from learner.text.tokenizers import Tokenizers


class TextEncoder(Protocol):
    """What the worker needs from a model: K context vectors of size D per document."""

    @property
    def k(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Tensor:
        """(N,) texts -> (N, K, D) float32 context vectors on :attr:`device`."""
        ...

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(N,) texts -> ids (N, T) and mask (N, T) on the CPU: the first half of :meth:`encode`."""
        ...

    def encode_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        """The second half of :meth:`encode`: ids and mask (N, T) -> (N, K, D) on :attr:`device`."""
        ...

    def initial_codebook(self) -> Tensor:
        """(G·C, d) codebook the model was trained with: the root version of a new store."""
        ...

    @property
    def codebook(self) -> Codebook:
        """The model's codebook module: its code space maps context vectors to stored code vectors."""
        ...

    @property
    def device(self) -> torch.device: ...


class PoisonDocument(Exception):
    """A document the model cannot take (e.g. its text does not tokenize)."""


@dataclass
class DocumentEncoder:
    """A trained MBC model's amortization network, in eval mode, on one device."""

    model: MBCModel
    texts: TextBatcher  # tokenizes exactly as training did
    max_tokens: int
    _device: torch.device
    # The amortizer prepared for inference (learner.model.fast_attention); None: the model's own.
    fast: Callable[[Tensor, Tensor], Tensor] | None = None
    pad_to: int = 1  # pad token length up to a multiple of this (fewer shapes for torch.compile)
    autocast_bf16: bool = False  # the model's own amortizer under bf16 autocast (None ``fast`` only)
    # One tokenizer call at a time: a fast tokenizer whose settings change while another thread
    # encodes raises "Already borrowed" (the pipelined worker tokenizes from two stages at times).
    _tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        device: str = "auto",
        max_tokens: int | None = None,
        precision: str = "auto",
        compile: bool = False,
    ) -> DocumentEncoder:
        """Load ``checkpoint`` on ``device``.

        ``precision``: ``auto`` (bf16 weights on CUDA, fp32 on CPU), ``bf16``, ``fp32`` or
        ``autocast`` (fp32 weights under bf16 autocast on CUDA: the slow path, kept for comparison).
        ``compile``: ``torch.compile`` the amortizer (GPU; the first batches of a shape compile).
        """
        from learner.checkpoint import load_checkpoint, resolve_checkpoint
        from learner.model.fast_attention import inference_amortizer

        dev = pick_device(device)
        model, tokenizers, _meta = load_checkpoint(resolve_checkpoint(checkpoint), dev)
        model.eval()
        limit = min(max_tokens or model.config.max_doc_tokens, model.config.max_doc_tokens)
        fast = None
        if precision != "autocast":
            bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
            fast = inference_amortizer(model.amortizer, dev, bf16=bf16, compile=compile)
        return cls(
            model,
            TextBatcher(tokenizers, model.config),
            limit,
            dev,
            fast,
            64 if compile else 1,
            autocast_bf16=dev.type == "cuda",
        )

    @classmethod
    def of_model(
        cls, model: MBCModel, tokenizers: Tokenizers, device: torch.device, bf16: bool = False
    ) -> DocumentEncoder:
        """The encoder of an in-memory model as it is (training-time evaluation): its own
        amortizer, under bf16 autocast when ``bf16``."""
        return cls(model, TextBatcher(tokenizers, model.config), model.config.max_doc_tokens, device,
                   autocast_bf16=bf16)  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def k(self) -> int:
        return int(self.model.config.num_vectors)

    @property
    def dim(self) -> int:
        """Size of a stored code vector: d in a code space, D for a raw codebook."""
        return int(self.model.codebook.code_dim)

    def initial_codebook(self) -> Tensor:
        return self.model.codebook.vectors.detach().float().clone()  # (G·C, d)

    @property
    def codebook(self) -> Codebook:
        return self.model.codebook

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(N,) texts -> ids (N, T) and mask (N, T) on the CPU, right-padded."""
        with self._tokenizer_lock:  # one batch call of the fast tokenizer (Rust threads, GIL released)
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
        """(N,) texts -> (N, K, D) float32 context vectors."""
        return self.encode_tokens(*self.tokenize(texts))

    @torch.no_grad()
    def encode_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids (N, T) and mask (N, T) from :meth:`tokenize` (pinned when the device is CUDA, for an
        asynchronous copy) -> (N, K, D) float32 context vectors."""
        ids, mask = ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        if self.fast is not None:
            return self.fast(ids, mask).float()  # (N, K, D)
        autocast: Any = (
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
            if self.autocast_bf16
            else nullcontext()
        )
        with autocast:
            z = self.model.amortize(ids, mask)  # (N, K, D)
        return z.float()

    @torch.no_grad()
    def encode_codes(self, texts: Sequence[str], vectors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N,) texts -> context vectors (N, K, D), codes (N, K·G) against ``vectors`` (G·C, d), and
        the squared quantization errors (N, K·G)."""
        z = self.encode(texts)
        codes, err = self.model.codebook.encode(z, vectors)
        return z, codes, err
