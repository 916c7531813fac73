"""What online adaptation stored for a bank of documents (:func:`learner.eval.online.adapt`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from memory_store.codec import CODE_FORMAT_VERSION, encode_codebook, unpack_codes_batch


@dataclass
class Bank:
    """What online adaptation stored for N documents."""

    mode: str
    num_docs: int
    stored_codes: int  # codes stored per document: K·G
    num_codes: int  # rows of the codebook they index: G·C
    groups: int = 1  # G: slot j's code is one of group j mod G (what code format 2 packs by)
    blobs: list[bytes] = field(default_factory=list)  # compressed: packed codes per document
    versions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (N,)
    vectors: Tensor | None = None  # full: (N, K, D) float32 on CPU
    codebooks: dict[int, Tensor] = field(default_factory=dict)  # stored versions (G·C, d)
    rows: dict[int, Tensor] = field(default_factory=dict)  # their memory rows (G·C, D)
    text_bytes: int = 0  # paragraph: the documents' UTF-8 bytes (what that row keeps per document)

    @property
    def bank_bytes(self) -> int:
        if self.mode == "compressed":
            return sum(len(b) for b in self.blobs)
        if self.mode == "full" and self.vectors is not None:
            return int(self.vectors.numel() * 4)
        return self.text_bytes if self.mode == "paragraph" else 0

    @property
    def codebook_bytes(self) -> int:
        return sum(len(encode_codebook(v.cpu().numpy())) for v in self.codebooks.values())

    def codes(self) -> np.ndarray:
        """Unpack the stored blobs -> (N, K·G) code indices."""
        return unpack_codes_batch(
            self.blobs, self.stored_codes, self.num_codes, groups=self.groups, code_format=CODE_FORMAT_VERSION
        )
