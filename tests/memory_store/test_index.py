"""FAISS indexes: the same nearest codes as brute force; rebuilt when the file is missing, truncated,
corrupt or built from other vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memory_store.errors import InvalidRecord, UnknownCodebookVersion
from memory_store.index import IndexCache
from memory_store.store import MemoryStore
from tests.memory_store.helpers import codebook


def brute_force(vectors: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ((queries[:, None, :].astype(np.float64) - vectors[None, :, :]) ** 2).sum(-1)  # (N, C)
    order = np.argsort(d, axis=1)
    return d, order


def test_nearest_codes_equal_brute_force(store: MemoryStore) -> None:
    vectors = codebook(512, 32, seed=1)
    v = store.add_codebook_version(vectors)
    queries = np.random.default_rng(2).normal(size=(2000, 32)).astype(np.float32)
    queries[:10] = vectors[[3, 7, 11, 0, 511, 100, 200, 300, 400, 500]]  # exact hits
    d, order = brute_force(vectors, queries)

    distances, codes = store.code_index(v).search(queries, k=3)
    best = d[np.arange(len(queries)), order[:, 0]]
    # the distance of the code FAISS returns is the true minimum, for every query
    np.testing.assert_allclose(d[np.arange(len(queries)), codes[:, 0]], best, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(distances[:, 0], best, rtol=1e-4, atol=1e-3)
    # and the code itself is the brute-force one wherever the nearest code is not a near tie
    clear = d[np.arange(len(queries)), order[:, 1]] - best > 1e-3
    assert clear.sum() > 1900
    np.testing.assert_array_equal(codes[clear, 0], order[clear, 0])
    np.testing.assert_array_equal(codes[:10, 0], [3, 7, 11, 0, 511, 100, 200, 300, 400, 500])
    np.testing.assert_array_equal(store.code_index(v).quantize(queries), codes[:, 0])
    with pytest.raises(InvalidRecord):
        store.code_index(v).search(queries[:, :5])
    with pytest.raises(UnknownCodebookVersion):
        store.code_index(v + 1)


def _fresh_cache(store: MemoryStore) -> IndexCache:
    return IndexCache(store.indexes.directory, store.codebook_info, store.get_codebook)


@pytest.mark.parametrize("damage", ["delete", "truncate", "flip_byte", "delete_sidecar", "other_vectors"])
def test_index_is_rebuilt_when_the_file_is_damaged(store: MemoryStore, damage: str) -> None:
    v = store.add_codebook_version(codebook(512, 16, seed=4))
    queries = np.random.default_rng(5).normal(size=(100, 16)).astype(np.float32)
    expected = store.code_index(v).quantize(queries)
    index_path, sidecar = store.indexes.paths(v)
    assert index_path.exists() and sidecar.exists()
    good = index_path.read_bytes()
    ok_meta = json.loads(sidecar.read_text())
    assert ok_meta["codebook_sha256"] == store.codebook_info(v).vectors_sha256

    # a fresh process finds the file valid and uses it as it is
    before = index_path.stat().st_mtime_ns
    np.testing.assert_array_equal(_fresh_cache(store).get(v).quantize(queries), expected)
    assert index_path.stat().st_mtime_ns == before

    if damage == "delete":
        index_path.unlink()
    elif damage == "truncate":
        index_path.write_bytes(good[: len(good) // 2])
    elif damage == "flip_byte":
        index_path.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    elif damage == "delete_sidecar":
        sidecar.unlink()
    else:  # an index file of another codebook under this version's name
        store.code_index(store.add_codebook_version(codebook(512, 16, seed=9)))
        other, other_sidecar = store.indexes.paths(v + 1)
        index_path.write_bytes(other.read_bytes())
        sidecar.write_text(other_sidecar.read_text())

    np.testing.assert_array_equal(_fresh_cache(store).get(v).quantize(queries), expected)
    assert index_path.read_bytes() == good  # rebuilt and saved again
    assert json.loads(sidecar.read_text()) == ok_meta


def test_index_dir_defaults_next_to_the_sqlite_file(tmp_path: Path) -> None:
    with MemoryStore(f"sqlite:///{tmp_path / 'memory.db'}", auto_migrate=True) as s:
        v = s.add_codebook_version(codebook(8, 4))
        s.code_index(v)
    assert (tmp_path / "memory.faiss" / f"codebook-v{v}.faiss").exists()
