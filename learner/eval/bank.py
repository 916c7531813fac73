"""What online adaptation stored for a bank of documents (:func:`learner.eval.online.adapt`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from learner.model.memory import memory_naive
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
    rows: dict[int, Tensor] = field(default_factory=dict)  # their memory rows (G·C, D), per-code rows only
    decoded: Tensor | None = None  # compressed, summed codes (code_combine="sum"): (N, K, D) decoded rows
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

    def document_rows(self, positions: np.ndarray) -> Tensor:
        """Memory rows (n, R, D) of the documents at ``positions`` (n,), as stored: the float vectors
        (full), the decoded codes of summed codebooks, or every stored code's row (one per code)."""
        if self.vectors is not None:
            return self.vectors[positions]
        if self.decoded is not None:
            return self.decoded[positions]
        picked = self.codes()[positions]  # (n, K·G)
        rows = memory_naive(picked, self.versions[positions], self.rows).vectors  # (n·K·G, D)
        return rows.view(len(positions), picked.shape[1], -1)

    def codes(self) -> np.ndarray:
        """Unpack the stored blobs -> (N, K·G) code indices."""
        return unpack_codes_batch(
            self.blobs, self.stored_codes, self.num_codes, groups=self.groups, code_format=CODE_FORMAT_VERSION
        )
