"""Document keys and retrieval: the expected document comes first, deletions leave at once, a restart
rebuilds the same index, other processes' writes are followed, slices and versions are respected."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from memory_store.doc_keys import KeyIndex, document_keys
from memory_store.store import MemoryStore
from tests.memory_store.helpers import T0, codebook, doc, random_docs


def key_query(codes: list[int]):  # type: ignore[no-untyped-def]
    """A query equal to the key of a document with ``codes`` (in any version's space)."""

    def query(version: int, book: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return document_keys(np.asarray([codes]), book)[0]

    return query


def test_document_keys_are_the_normalised_mean_of_the_code_vectors() -> None:
    book = np.array([[3.0, 0.0], [0.0, 4.0], [1.0, 1.0]], dtype=np.float32)
    keys = document_keys(np.array([[0, 1], [2, 2], [0, 0]]), book)
    np.testing.assert_allclose(keys, [[0.6, 0.8], [2**-0.5, 2**-0.5], [1.0, 0.0]], rtol=1e-6)


def test_the_document_whose_codes_the_query_describes_comes_first(store: MemoryStore, version: int) -> None:
    docs = random_docs(300, version, seed=1)
    store.write_batch(docs)
    target = docs[123]
    codes = store.document(target.id).indices  # type: ignore[union-attr]
    found = store.retrieve(key_query(list(codes)), 5)
    assert found[0].id == target.id
    assert found[0].score == pytest.approx(1.0, abs=1e-5)  # a unit key against itself
    assert found[0].indices == codes and found[0].title == f"title of {target.id}"
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    assert len(found) == 5 and found[1].score < 0.9


def test_a_deleted_document_is_gone_at_once_even_from_another_process(
    store: MemoryStore, version: int, db_url: str, tmp_path: Path
) -> None:
    docs = random_docs(100, version, seed=2)
    store.write_batch(docs)
    query = key_query(list(store.document("d7").indices))  # type: ignore[union-attr]
    assert store.retrieve(query, 3)[0].id == "d7"
    other = MemoryStore(db_url, index_dir=tmp_path / "other")  # another reader/writer process
    assert other.delete_document("d7")
    other.close()
    found = store.retrieve(query, 3)  # within the index's refresh interval: the database decides
    assert "d7" not in [d.id for d in found] and len(found) == 3
    store.documents_index.refresh(force=True)
    assert len(store.documents_index) == 99  # and the log took it out of the index


def test_a_restart_rebuilds_the_same_index(
    store: MemoryStore, version: int, db_url: str, tmp_path: Path
) -> None:
    store.write_batch(random_docs(200, version, seed=3))
    store.delete_documents(["d5", "d50"])
    queries = [key_query([int(c) for c in np.random.default_rng(i).integers(0, 512, 12)]) for i in range(5)]
    before = [[(d.id, round(d.score, 5)) for d in store.retrieve(q, 8)] for q in queries]
    restarted = MemoryStore(db_url, index_dir=tmp_path / "restarted")
    after = [[(d.id, round(d.score, 5)) for d in restarted.retrieve(q, 8)] for q in queries]
    assert len(restarted.documents_index) == 198
    restarted.close()
    assert before == after and all(len(b) == 8 for b in before)


def test_documents_written_by_another_process_are_followed(
    store: MemoryStore, version: int, db_url: str, tmp_path: Path
) -> None:
    store.write_batch(random_docs(50, version, seed=4))
    assert len(store.retrieve(key_query([1] * 12), 1)) == 1  # built now
    writer = MemoryStore(db_url, index_dir=tmp_path / "writer")
    writer.write_batch([doc("late", [9, 9, 9, 10] * 3, version)])
    writer.close()
    store.documents_index.refresh(force=True)
    found = store.retrieve(key_query([9, 9, 9, 10] * 3), 1)
    assert [d.id for d in found] == ["late"] and found[0].score == pytest.approx(1.0, abs=1e-5)


def test_a_document_keeps_the_key_of_its_codebook_version(store: MemoryStore, version: int) -> None:
    v2 = store.add_codebook_version(codebook(seed=7), parent=version)
    codes = [3, 4, 5] * 4
    store.write_batch([doc("old", codes, version), doc("new", codes, v2)])
    store.write_batch(random_docs(40, version, seed=5) + random_docs(40, v2, seed=6, prefix="e"))
    found = store.retrieve(key_query(codes), 2)  # each version's query from its own book
    assert sorted(d.id for d in found) == ["new", "old"]
    assert {d.id: d.codebook_version for d in found} == {"old": version, "new": v2}
    assert all(d.score == pytest.approx(1.0, abs=1e-5) for d in found)


def test_retrieval_stays_inside_the_slice(store: MemoryStore, version: int) -> None:
    docs = random_docs(300, version, seed=8)  # sources src0..src2, 72 hours from T0
    store.write_batch(docs)
    query = key_query(list(store.document("d10").indices))  # type: ignore[union-attr]
    for found in (store.retrieve(query, 4, source="src2"), store.retrieve(query, 4, source="src1")):
        assert len(found) == 4 and len({d.source for d in found}) == 1
    assert store.retrieve(query, 4, source="src1")[0].id == "d10"  # 10 % 3 == 1
    lo, hi = T0 + timedelta(hours=10), T0 + timedelta(hours=11)  # a narrow window: the fallback path
    window = store.retrieve(query, 50, since=lo, until=hi)
    expected = {d.id for d in docs if lo <= d.published_at < hi}
    assert {d.id for d in window} == expected and 0 < len(expected) < 50
    assert store.retrieve(query, 4, source="no-such-source") == []


def test_an_ivf_index_beyond_the_flat_limit_finds_the_same_document() -> None:
    rng = np.random.default_rng(0)
    book = rng.normal(size=(512, 16)).astype(np.float32)
    codes = rng.integers(0, 512, size=(5000, 12))
    keys = document_keys(codes, book)
    ids = np.arange(5000, dtype=np.int64) * 3
    ivf = KeyIndex.build(1, ids, keys, flat_limit=1000)
    flat = KeyIndex.build(1, ids, keys)
    assert (ivf.kind, flat.kind) == ("IndexIVFFlat", "IndexFlatIP")
    for i in (0, 777, 4999):
        s_ivf, i_ivf = ivf.search(keys[i], 3)
        _, i_flat = flat.search(keys[i], 3)
        assert i_ivf[0] == i_flat[0] == ids[i] and s_ivf[0] == pytest.approx(1.0, abs=1e-5)
    assert ivf.remove(ids[[777]]) == 1 and ivf.search(keys[777], 1)[1][0] != ids[777]
    allowed = ids[[10, 20, 30]]
    assert sorted(flat.search(keys[20], 5, allowed)[1].tolist()) == sorted(allowed.tolist())
    assert flat.search(keys[20], 5, allowed)[1][0] == ids[20]


def test_keys_searched_on_a_torch_device_give_the_flat_index_s_answers() -> None:
    """A GPU reader's copy of the keys (here on the CPU device: the same code path) returns what FAISS
    returns, follows additions and removals, and keeps to the allowed ids."""
    rng = np.random.default_rng(5)
    book = rng.normal(size=(512, 16)).astype(np.float32)
    keys = document_keys(rng.integers(0, 512, size=(3000, 12)), book)
    ids = np.arange(3000, dtype=np.int64) * 7 + 1
    flat = KeyIndex.build(1, ids[:2000], keys[:2000])
    dev = KeyIndex.build(1, ids[:2000], keys[:2000], device="cpu")
    for index in (flat, dev):
        index.add(ids[2000:], keys[2000:])
        assert index.remove(ids[[5, 2500]]) == 2
    assert dev.on_device is not None and len(dev.on_device.ids) == dev.size == 2998
    queries = [keys[i] for i in (0, 5, 1999, 2500, 2999)] + list(rng.normal(size=(3, 16)).astype(np.float32))
    for q in queries:
        s_flat, i_flat = flat.search(q, 8)
        s_dev, i_dev = dev.search(q, 8)
        assert i_dev.tolist() == i_flat.tolist()
        np.testing.assert_allclose(s_dev, s_flat, rtol=1e-5, atol=1e-5)
    assert ids[5] not in dev.search(keys[5], 3)[1] and dev.search(keys[2999], 1)[1][0] == ids[2999]
    allowed = ids[[10, 20, 30, 5]]  # ids[5] was removed: three remain
    s_in, i_in = dev.search(keys[20], 5, allowed)
    assert i_in[0] == ids[20] and sorted(i_in.tolist()) == sorted(ids[[10, 20, 30]].tolist())
    assert np.isfinite(s_in).all()


def test_a_store_with_a_key_device_retrieves_what_the_host_index_retrieves(
    db_url: str, tmp_path: Path, version: int, store: MemoryStore
) -> None:
    store.write_batch(random_docs(200, version, seed=9))
    store.delete_documents(["d3"])
    on_device = MemoryStore(db_url, index_dir=tmp_path / "dev", key_device="cpu")
    try:
        queries = [key_query(list(store.document(n).indices)) for n in ("d1", "d77")]  # type: ignore[union-attr]
        queries.append(key_query([3] * 12))
        for q in queries:
            assert [d.id for d in on_device.retrieve(q, 6)] == [d.id for d in store.retrieve(q, 6)]
        assert on_device.documents_index.describe()["versions"] == {
            version: {"documents": 199, "index": "IndexFlatIP", "searched_on": "cpu"}
        }
    finally:
        on_device.close()
