"""Document keys and the FAISS inner-product index of one codebook version's keys.

A document's **key** is derived from what the store keeps: its K stored codes looked up in the
codebook version it was written with, averaged, l2-normalised (:func:`document_keys`). Every key of
a version lives in that version's space (the stored code vectors, (G·C, d)); a document keeps the
key of its own version for good (versions never change, docs/DESIGN.md §3b). A question is scored
against a version's keys by inner product with a query vector in the same space (the answerer's
side, :mod:`learner.ask.retrieval`, says how it is made).

:class:`KeyIndex` holds one version's keys: exact ``IndexFlatIP`` while the keys hold at most
:data:`FLAT_FLOATS` floats (2^25: 10^6 documents of 32-dimensional keys, ~10 ms per query on one
CPU core; 4·10^4 of 768), an ``IndexIVFFlat`` (inner product, 4·√N lists, trained on the keys,
1/16 of them probed) beyond; both behind int64 ids so that deleted documents leave exactly
(``remove_ids``). bench/retrieval.md has the figures behind the choice.

On a GPU reader (``device``, e.g. ``"cuda"``) a flat index also keeps a copy of its keys on that device
(:class:`DeviceKeys`) and searches there: one matrix-vector product and a top-k, ~1 ms at 10^6 keys,
where FAISS's exact search for one query runs on a single host core (7–14 ms at 10^6). The FAISS index
stays the record (its bytes, its kind); the copy follows every add and removal.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from memory_store.errors import InvalidRecord

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # not four INFO lines on every command

FLAT_FLOATS = 2**25  # keys x dimensions searched exactly (128 MiB of keys); an IVF index beyond


def flat_limit_for(dim: int) -> int:
    """Documents of ``dim``-dimensional keys one version searches exactly."""
    return max(1, FLAT_FLOATS // dim)


def document_keys(codes: npt.ArrayLike, book: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Keys (N, d) of documents with stored codes (N, K) of one codebook version (G·C, d):
    the mean of their code vectors, l2-normalised (a zero mean stays zero)."""
    c = np.asarray(codes, dtype=np.int64)
    e = np.asarray(book, dtype=np.float32)
    if c.ndim != 2 or e.ndim != 2:
        raise InvalidRecord(f"expected codes (N, K) and a codebook (C, d), got {c.shape} and {e.shape}")
    mean = e[c].mean(axis=1) if c.shape[1] else np.zeros((c.shape[0], e.shape[1]), np.float32)  # (N, d)
    norm = np.linalg.norm(mean, axis=1, keepdims=True)  # (N, 1)
    return np.ascontiguousarray(mean / np.maximum(norm, 1e-12), dtype=np.float32)


def _flat(dim: int) -> Any:
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _ivf(keys: npt.NDArray[np.float32], seed: int = 0) -> Any:
    """An IVF inner-product index trained on (a sample of) ``keys``, empty."""
    import faiss

    n, dim = keys.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # FAISS wants >= 39 training points per list
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = keys
    if n > 64 * nlist:
        sample = keys[np.random.default_rng(seed).choice(n, 64 * nlist, replace=False)]
    index.train(sample)
    index.nprobe = min(nlist, max(32, nlist // 16))  # 1/16 of the lists: recall@8 ~0.9 on random keys
    return index


class DeviceKeys:
    """A copy of a flat index's keys (N, d) and ids (N,) on a torch device, searched exactly there."""

    def __init__(self, dim: int, device: str) -> None:
        import torch

        self.device = torch.device(device)
        self.keys = torch.zeros(0, dim, device=self.device)  # (N, d)
        self.ids = np.zeros(0, np.int64)  # (N,)

    def add(self, ids: npt.NDArray[np.int64], keys: npt.NDArray[np.float32]) -> None:
        import torch

        new = torch.from_numpy(np.ascontiguousarray(keys, dtype=np.float32)).to(self.device)
        self.keys = torch.cat([self.keys, new])
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])

    def remove(self, ids: npt.NDArray[np.int64]) -> None:
        keep = ~np.isin(self.ids, ids)  # (N,)
        if not keep.all():
            import torch

            self.keys = self.keys[torch.from_numpy(keep).to(self.device)]
            self.ids = self.ids[keep]

    def search(
        self, q: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.int64] | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top ``k`` (scores, ids) for one query (1, d), best first, within ``allowed`` if given."""
        import torch

        scores = self.keys @ torch.from_numpy(q[0]).to(self.device)  # (N,)
        if allowed is not None:
            inside = torch.from_numpy(np.isin(self.ids, allowed)).to(self.device)  # (N,)
            scores = scores.masked_fill(~inside, float("-inf"))
            k = min(k, int(inside.sum()))
        top = torch.topk(scores, min(k, len(self.ids)))
        return top.values.cpu().numpy(), self.ids[top.indices.cpu().numpy()]


class KeyIndex:
    """The keys of one codebook version's documents, searchable by inner product, by int64 id;
    ``device``: also search a copy of a flat index's keys on that torch device (:class:`DeviceKeys`)."""

    def __init__(
        self, version: int, dim: int, flat_limit: int | None = None, device: str | None = None
    ) -> None:
        self.version, self.dim = version, dim
        self.flat_limit = flat_limit_for(dim) if flat_limit is None else flat_limit
        self.index: Any = _flat(dim)
        self.kind = "IndexFlatIP"
        self.on_device = DeviceKeys(dim, device) if device else None

    @classmethod
    def build(
        cls,
        version: int,
        ids: npt.NDArray[np.int64],
        keys: npt.NDArray[np.float32],
        flat_limit: int | None = None,
        device: str | None = None,
    ) -> KeyIndex:
        """An index of ``keys`` (N, d) under ``ids`` (N,): flat up to ``flat_limit`` documents
        (default :func:`flat_limit_for` d), IVF beyond; ``device``: see the class."""
        out = cls(version, int(keys.shape[1]), flat_limit, device)
        if len(ids) > out.flat_limit:
            out.index, out.kind, out.on_device = _ivf(keys), "IndexIVFFlat", None
        out.add(ids, keys)
        return out

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: npt.NDArray[np.int64], keys: npt.NDArray[np.float32]) -> None:
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(keys, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
            )
            if self.on_device is not None:
                self.on_device.add(ids, keys)

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        import faiss

        if not len(ids):
            return 0
        if self.on_device is not None:
            self.on_device.remove(ids)
        return int(self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))))

    def search(
        self, query: npt.ArrayLike, k: int, allowed: npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top ``k`` (scores, ids) for one query (d,), best first, within ``allowed`` ids if given;
        fewer than ``k`` when the index (or ``allowed``) holds fewer."""
        import faiss

        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise InvalidRecord(f"query has {q.shape[1]} dimensions, the keys of v{self.version} {self.dim}")
        k = min(k, self.size if allowed is None else min(self.size, len(allowed)))
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if self.on_device is not None:
            return self.on_device.search(q, k, allowed)
        params: Any = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if self.kind == "IndexIVFFlat":
                params = faiss.SearchParametersIVF(sel=sel, nprobe=self.index.nprobe)  # type: ignore[call-arg]
            else:
                params = faiss.SearchParameters(sel=sel)  # type: ignore[call-arg]
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: OpenMP's threads only spin (15 ms vs 0.03 at 10^3 docs)
        try:
            scores, ids = self.index.search(q, k, params=params)  # (1, k) each
        finally:
            faiss.omp_set_num_threads(threads)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep].astype(np.int64)

    def memory_bytes(self) -> int:
        """Bytes of the FAISS index as serialized (keys, ids, IVF lists and centroids)."""
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)
