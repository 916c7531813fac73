"""What the aggregator attends over, in the three forms the model supports.

* **counts** (docs/DESIGN.md §3a): the bank as a count per (codebook version, code). The aggregator
  attends over the *distinct* code vectors with log(count) added to the attention logits —
  exactly what attending over every stored vector gives, in O(distinct codes).
* **naive**: every stored vector of every document (N·K rows), from code indices (N, K) and each
  document's codebook version.
* **full**: MAC-style float memory, the K float context vectors of every document.

All three produce a :class:`Memory`: rows of vectors shared by every question of a batch, with an
optional additive log-weight per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from memory_store.codec import count_rows

# How a memory is built from stored codes: counts per (version, code), exact (docs/DESIGN.md §3a),
# or every stored code (the naive path: O(bank), for tests and benchmarks).
Aggregation = Literal["counts", "naive"]


@dataclass
class Memory:
    """Memory rows for cross-attention.

    ``vectors`` is (M, D) — shared by every question — or (B, M, D) per question;
    ``log_weight`` is None (every row counts once), (M,) log multiplicities, or (B, M) per question
    (e.g. -inf for rows a question may not see).
    """

    vectors: Tensor
    log_weight: Tensor | None = None

    @property
    def num_rows(self) -> int:
        return int(self.vectors.shape[-2])


def count_codes(codes: npt.ArrayLike, versions: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Collapse a bank into (version, code, count) rows, sorted by version then code.

    ``codes`` is (N, K) code indices, ``versions`` (N,) the codebook version of each document.
    """
    c = np.asarray(codes, dtype=np.int64)
    v = np.asarray(versions, dtype=np.int64)
    if c.ndim != 2 or v.shape != (c.shape[0],):
        raise ValueError(f"expected codes (N, K) and versions (N,), got {c.shape} and {v.shape}")
    pairs = np.stack([np.repeat(v, c.shape[1]), c.reshape(-1)], axis=1)  # (N*K, 2)
    return count_rows(pairs)  # the store's rule (memory_store.codec)


def _codebook(codebooks: Mapping[int, Tensor], version: int) -> Tensor:
    try:
        return codebooks[version]
    except KeyError:
        raise KeyError(f"codebook version {version} is not available (have {sorted(codebooks)})") from None


def memory_from_counts(
    rows: npt.ArrayLike, codebooks: Mapping[int, Tensor], device: torch.device | None = None
) -> Memory:
    """Memory from (version, code, count) rows (R, 3) and a mapping version -> (C, D) codebook."""
    r = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    if (r[:, 2] <= 0).any():
        raise ValueError("counts must be positive")
    r = r[np.argsort(r[:, 0], kind="stable")]  # group rows by version, keeping their order inside
    dim = next(iter(codebooks.values())).shape[1]
    parts = [torch.zeros(0, dim)]
    for version in np.unique(r[:, 0]):
        book = _codebook(codebooks, int(version)).float()
        idx = torch.as_tensor(r[r[:, 0] == version, 1], device=book.device)
        parts.append(book[idx].cpu())  # (R_v, D)
    vectors = torch.cat(parts, 0)  # (R, D)
    log_weight = torch.log(torch.as_tensor(r[:, 2], dtype=torch.float32))  # (R,)
    if device is not None:
        vectors, log_weight = vectors.to(device), log_weight.to(device)
    return Memory(vectors, log_weight)


def memory_naive(
    codes: npt.ArrayLike | Tensor,
    versions: npt.ArrayLike | Tensor,
    codebooks: Mapping[int, Tensor],
    device: torch.device | None = None,
) -> Memory:
    """Memory with one row per stored code: codes (N, K), versions (N,) -> (N*K, D)."""
    c = torch.as_tensor(np.asarray(codes), dtype=torch.int64)
    v = torch.as_tensor(np.asarray(versions), dtype=torch.int64)
    if c.ndim != 2 or v.shape != (c.shape[0],):
        raise ValueError(
            f"expected codes (N, K) and versions (N,), got {tuple(c.shape)} and {tuple(v.shape)}"
        )
    dim = next(iter(codebooks.values())).shape[1]
    out = torch.zeros(c.shape[0], c.shape[1], dim)  # (N, K, D)
    for version in torch.unique(v).tolist():
        sel = v == version
        book = _codebook(codebooks, int(version)).float().cpu()
        out[sel] = book[c[sel]]
    vectors = out.reshape(-1, dim)  # (N*K, D)
    return Memory(vectors.to(device) if device is not None else vectors)


def memory_full(context: Tensor) -> Memory:
    """MAC-style float memory from context vectors (N, K, D) -> (N*K, D) rows."""
    return Memory(context.reshape(-1, context.shape[-1]))
