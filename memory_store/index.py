"""FAISS indexes of codebook versions: exact nearest-code search for readers and CPU quantizing.

One ``IndexFlatL2`` per codebook version (exact; at C = 512 a flat index is as fast as anything),
saved in the index directory next to the database as ``codebook-v<N>.faiss`` (a plain FAISS file)
with a sidecar ``codebook-v<N>.json`` holding the file's SHA-256 and the SHA-256 of the codebook
vectors it was built from. An index whose file is missing, truncated, corrupt, or built from other
vectors is rebuilt from the database and written again (index file first, then the sidecar, each
atomically), so a crash at any point leaves either a valid pair or one that fails the check.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from infra.logging import get_logger
from memory_store.db import sqlite_path
from memory_store.errors import IndexUnavailable, InvalidRecord
from memory_store.records import CodebookInfo, StoredCodebook

log = get_logger(__name__)
SIDECAR_FORMAT = 1


def default_index_dir(url: str) -> Path:
    """Next to a SQLite file (``memory.db`` -> ``memory.faiss/``), else ``mbc-data/faiss``."""
    path = sqlite_path(url)
    return path.with_suffix(".faiss") if path is not None else Path("mbc-data/faiss")


class CodebookIndex:
    """Exact nearest-code search over the C vectors of one codebook version."""

    def __init__(self, version: int, index: Any) -> None:
        self.version = version
        self.index = index
        self.num_codes = int(index.ntotal)
        self.dim = int(index.d)

    @classmethod
    def build(cls, codebook: StoredCodebook) -> CodebookIndex:
        import faiss

        index = faiss.IndexFlatL2(codebook.info.dim)
        index.add(np.ascontiguousarray(codebook.vectors, dtype=np.float32))  # (C, D)
        return cls(codebook.info.version, index)

    def search(
        self, vectors: npt.ArrayLike, k: int = 1
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The ``k`` nearest codes of each row of ``vectors`` (N, D): squared L2 distances, codes."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidRecord(f"expected vectors of shape (N, {self.dim}), got {x.shape}")
        if not 1 <= k <= self.num_codes:
            raise InvalidRecord(f"k must be in [1, {self.num_codes}], got {k}")
        distances, codes = self.index.search(x, k)  # (N, k) each
        return distances, codes.astype(np.int64)

    def quantize(self, vectors: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Nearest code of each row of ``vectors`` (N, D) -> (N,)."""
        return self.search(vectors, 1)[1][:, 0]


class IndexCache:
    """Indexes by version: from memory, else from a verified file, else rebuilt from the database."""

    def __init__(
        self,
        directory: Path,
        info: Callable[[int], CodebookInfo],
        codebook: Callable[[int], StoredCodebook],
    ) -> None:
        self.directory = directory
        self._info = info
        self._codebook = codebook
        self._loaded: dict[int, CodebookIndex] = {}
        self._lock = threading.Lock()

    def paths(self, version: int) -> tuple[Path, Path]:
        """The index file and its sidecar."""
        stem = self.directory / f"codebook-v{version}"
        return stem.with_suffix(".faiss"), stem.with_suffix(".json")

    def get(self, version: int) -> CodebookIndex:
        with self._lock:
            if version not in self._loaded:
                info = self._info(version)
                self._loaded[version] = self._read(info) or self._rebuild(version)
            return self._loaded[version]

    def rebuild(self, version: int) -> CodebookIndex:
        """Build the index from the database and save it, whatever is on disk."""
        with self._lock:
            self._loaded[version] = self._rebuild(version)
            return self._loaded[version]

    def _read(self, info: CodebookInfo) -> CodebookIndex | None:
        import faiss

        index_path, sidecar_path = self.paths(info.version)
        try:
            meta = json.loads(sidecar_path.read_text())
            data = index_path.read_bytes()
        except (OSError, ValueError):
            return None
        if (
            meta.get("format") != SIDECAR_FORMAT
            or meta.get("sha256") != hashlib.sha256(data).hexdigest()
            or meta.get("codebook_sha256") != info.vectors_sha256
        ):
            log.warning(
                "faiss index failed its check, rebuilding", version=info.version, path=str(index_path)
            )
            return None
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError:
            return None
        if index.ntotal != info.num_codes or index.d != info.dim:
            return None
        return CodebookIndex(info.version, index)

    def _rebuild(self, version: int) -> CodebookIndex:
        import faiss

        codebook = self._codebook(version)
        built = CodebookIndex.build(codebook)
        data = faiss.serialize_index(built.index).tobytes()
        index_path, sidecar_path = self.paths(version)
        meta = {
            "format": SIDECAR_FORMAT,
            "version": version,
            "sha256": hashlib.sha256(data).hexdigest(),
            "codebook_sha256": codebook.info.vectors_sha256,
            "num_codes": codebook.info.num_codes,
            "dim": codebook.info.dim,
            "faiss": faiss.__version__,
            "index_type": "IndexFlatL2",
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _atomic_write(index_path, data)
            _atomic_write(sidecar_path, json.dumps(meta, indent=1).encode())
        except OSError as e:
            raise IndexUnavailable(f"cannot write FAISS index to {self.directory}: {e.strerror}") from e
        log.info("faiss index built", version=version, path=str(index_path))
        return built


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
