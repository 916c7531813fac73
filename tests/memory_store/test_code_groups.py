"""Grouped codebooks (product quantization) in the store: code format 2 packs by the version's G,
format-1 rows already stored still read, and the counts stay exact through both (both backends)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from memory_store import migrate
from memory_store.db import make_engine
from memory_store.errors import InvalidRecord
from memory_store.models import codebook_versions
from memory_store.store import MemoryStore
from tests.memory_store.helpers import T0, as_dict, codebook, doc, random_docs, recount

G, C_GROUP, VECTORS = 4, 512, 12
C, K = G * C_GROUP, VECTORS * G  # the smollm2-135m code space: 2048 codes, 48 per document


def grouped_docs(n: int, version: int, code_format: int, prefix: str, groups: int = G) -> list:
    """Documents of 48 codes, slot j's code in group j mod 4, packed in ``code_format``."""
    return random_docs(
        n, version, seed=len(prefix), k=K, num_codes=C, prefix=prefix, groups=groups, code_format=code_format
    )


def test_format_2_is_54_bytes_and_counts_stay_exact(store: MemoryStore) -> None:
    v = store.add_codebook_version(codebook(C), groups=G)
    assert store.codebook_info(v).groups == G
    docs = grouped_docs(40, v, 2, "new")
    assert {len(d.codes) for d in docs} == {54}
    assert store.write_batch(docs).inserted_count == 40
    assert store.stats().code_bytes == 40 * 54
    codes, versions = store.slice_codes()
    assert codes.shape == (40, K) and set(versions.tolist()) == {v}
    assert ((codes % C) // C_GROUP == np.arange(K) % G).all()  # every code in its slot's group
    stored = store.document("new0")
    assert stored is not None and stored.code_format == 2 and len(stored.codes) == 54
    want = recount(store)
    assert as_dict(store.counts()) == want
    assert sum(want.values()) == 40 * K
    until = T0 + timedelta(hours=30, minutes=7)  # whole days and a partial one: documents decoded
    assert as_dict(store.counts(until=until)) == recount(store, until=until)
    assert store.delete_documents(["new1", "new2"]) == ["new1", "new2"]
    assert as_dict(store.counts()) == recount(store)
    assert sum(as_dict(store.counts()).values()) == 38 * K


def test_format_1_rows_read_beside_format_2(store: MemoryStore) -> None:
    """A G = 1 version (what the migration gives versions stored before it) keeps its format-1 rows
    (66 bytes); its EMA child knows G = 4 and takes format-2 rows (54 bytes): one store, both read."""
    root = store.add_codebook_version(codebook(C))
    old = grouped_docs(30, root, 1, "old")
    assert {len(d.codes) for d in old} == {66}
    store.write_batch(old)
    child = store.add_codebook_version(codebook(C, seed=1), parent=root, groups=G)
    new = grouped_docs(30, child, 2, "new")
    store.write_batch(new)
    assert store.stats().code_bytes == 30 * 66 + 30 * 54
    codes, versions = store.slice_codes()
    by_id = {d.id: d for d in old + new}
    ids = sorted(by_id)
    for row, ver, doc_id in zip(codes, versions, ids, strict=True):  # slice_codes orders by id
        stored = store.document(doc_id)
        assert stored is not None and list(stored.indices) == row.tolist()
        assert ver == by_id[doc_id].codebook_version
        assert by_id[doc_id].codes == stored.codes
        assert stored.code_format == by_id[doc_id].code_format
    counts = as_dict(store.counts())
    assert counts == recount(store)
    assert sum(n for (ver, _), n in counts.items() if ver == root) == 30 * K
    assert sum(n for (ver, _), n in counts.items() if ver == child) == 30 * K
    since = T0 + timedelta(hours=5, minutes=3)
    assert as_dict(store.counts(since=since, source="src1")) == recount(store, since=since, source="src1")
    # format 2 of a G = 1 version is format 1's bytes: global indices
    same = doc("g1", list(range(0, K * 40, 40)), root, num_codes=C, code_format=2)
    assert same.codes == doc("g1", list(range(0, K * 40, 40)), root, num_codes=C, code_format=1).codes
    store.write_batch([same])
    assert as_dict(store.counts()) == recount(store)


def test_what_a_grouped_version_refuses(store: MemoryStore) -> None:
    with pytest.raises(InvalidRecord, match="groups"):
        store.add_codebook_version(codebook(512), groups=3)  # 512 codes do not split into 3
    with pytest.raises(InvalidRecord, match="groups"):
        store.add_codebook_version(codebook(8), groups=8)  # groups of one code
    v = store.add_codebook_version(codebook(C), groups=G)
    good = grouped_docs(1, v, 2, "ok")[0]
    bad = [
        replace(good, id="old-size", codes=grouped_docs(1, v, 1, "ok")[0].codes),  # 66 bytes, says format 2
        replace(good, id="k", k=K - 1, codes=good.codes),  # not whole vectors of 4 codes
        replace(good, id="fmt", code_format=3),
    ]
    for b in bad:
        with pytest.raises(InvalidRecord):
            store.write_batch([good, b])
    assert store.stats().documents == 0
    # G is part of what a version means: it cannot change, and the CHECK holds without the store
    with store.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="immutable"):
        conn.execute(sa.text("UPDATE codebook_versions SET groups = 1 WHERE version = :v"), {"v": v})
    row = {
        "num_codes": 512,
        "dim": 16,
        "groups": 3,
        "dtype": "float32",
        "vectors": b"",
        "vectors_sha256": "x",
    }
    with store.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError, match="ck_codebook_groups"):
        conn.execute(sa.insert(codebook_versions).values(**row, created_at=T0))


def test_migration_keeps_format_1_rows_and_adds_groups(db_url: str, tmp_path: Path) -> None:
    """Down to 0003 (no groups column) with format-1 rows stored, up again: G = 1, same codes, same counts."""
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with MemoryStore(db_url, index_dir=tmp_path) as store:
        root = store.add_codebook_version(codebook(C))
        store.write_batch(grouped_docs(25, root, 1, "old"))
        before_codes, _ = store.slice_codes()
        before_counts = store.counts()

    migrate.downgrade(engine, "0003_linear_codebook_history")
    columns = {c["name"] for c in sa.inspect(engine).get_columns("codebook_versions")}
    assert "groups" not in columns and "num_codes" in columns
    with engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="immutable"):  # trigger kept
        conn.execute(sa.text("UPDATE codebook_versions SET dim = 3"))
    with engine.begin() as conn:  # health stays updatable
        conn.execute(sa.text("UPDATE codebook_versions SET resets = 7"))

    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()  # test_migrations pins its name
    with MemoryStore(db_url, index_dir=tmp_path) as store:
        assert store.codebook_info(root).groups == 1 and store.codebook_info(root).health.resets == 7
        codes, _ = store.slice_codes()
        assert np.array_equal(codes, before_codes)
        assert store.counts() == before_counts
        assert as_dict(before_counts) == recount(store)
        child = store.add_codebook_version(codebook(C, seed=2), parent=root, groups=G)
        store.write_batch(grouped_docs(10, child, 2, "new"))
        assert store.stats().code_bytes == 25 * 66 + 10 * 54
        assert as_dict(store.counts()) == recount(store)
        with store.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="immutable"):
            conn.execute(sa.text("UPDATE codebook_versions SET groups = 2 WHERE version = :v"), {"v": child})
    engine.dispose()
