"""Write path: idempotence, one transaction for documents + counts + offsets, validation, deletes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from memory_store import writes
from memory_store.errors import InvalidRecord, StoreBusy, UnknownCodebookVersion
from memory_store.records import CodebookHealth, CodeCount, ConsumedOffset, SourcePosition
from memory_store.store import MemoryStore
from tests.memory_store.helpers import T0, as_dict, codebook, doc, random_docs, recount, table_count


def test_batch_written_twice_changes_nothing(store: MemoryStore, version: int) -> None:
    docs = random_docs(200, version)
    first = store.write_batch(docs, [ConsumedOffset("learner", "docs.clean", 0, 200)])
    assert first.inserted_count == 200 and first.duplicates == () and first.offsets == 1
    counts, stats = store.counts(), store.stats()
    daily = table_count(store, "code_counts_daily")

    again = store.write_batch(docs, [ConsumedOffset("learner", "docs.clean", 0, 200)])

    assert again.inserted == () and sorted(again.duplicates) == sorted(d.id for d in docs)
    assert store.counts() == counts
    assert sum(c.n for c in counts) == 200 * 12
    assert store.stats().documents == stats.documents == 200
    assert store.stats().code_bytes == 200 * 14
    assert table_count(store, "code_counts_daily") == daily
    assert store.stored_offsets("learner", "docs.clean") == {0: 200}


def test_first_write_of_an_id_wins_and_repeats_in_a_batch_are_skipped(
    store: MemoryStore, version: int
) -> None:
    a = doc("x", [1] * 12, version)
    b = doc("x", [2] * 12, version)  # same id, other codes
    result = store.write_batch([a, b, doc("y", [3] * 12, version)])
    assert result.inserted == ("x", "y") and result.duplicates == ("x",)
    store.write_batch([b])
    assert as_dict(store.counts()) == {(version, 1): 12, (version, 3): 12}
    stored = store.document("x")
    assert stored is not None and stored.indices == (1,) * 12


def test_failed_transaction_leaves_neither_documents_nor_offsets(
    store: MemoryStore, version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_batch(random_docs(10, version, prefix="old"), [ConsumedOffset("g", "t", 0, 10)])
    before = (store.counts(), table_count(store, "code_counts_daily"), table_count(store, "sources"))

    def boom(conn: sa.Connection, offsets: object) -> int:  # after documents and counts are written
        assert table_count_in(conn, "documents") == 61
        raise RuntimeError("crash between documents and offsets")

    monkeypatch.setattr(writes, "store_offsets", boom)
    new = [*random_docs(50, version, prefix="new"), doc("other", [5] * 12, version, source="brand-new")]
    with pytest.raises(RuntimeError):
        store.write_batch(new, [ConsumedOffset("g", "t", 0, 60), ConsumedOffset("g", "t", 1, 7)])
    monkeypatch.undo()

    assert store.stats().documents == 10
    assert store.document("new0") is None and store.document("other") is None
    assert store.stored_offsets("g", "t") == {0: 10}
    assert (store.counts(), table_count(store, "code_counts_daily"), table_count(store, "sources")) == before
    # the source created inside the failed transaction was not cached: writing it now works
    assert store.write_batch([doc("other", [5] * 12, version, source="brand-new")]).inserted == ("other",)


def table_count_in(conn: sa.Connection, table: str) -> int:
    return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_bad_offset_at_the_end_of_the_transaction_rolls_back_everything(
    store: MemoryStore, version: int
) -> None:
    # offsets are checked last, after the documents and counts were written in the transaction
    with pytest.raises(InvalidRecord):
        store.write_batch(random_docs(5, version), [ConsumedOffset("g", "t", 0, -1)])
    assert store.stats().documents == 0 and store.counts() == [] and store.stored_offsets("g", "t") == {}


def test_offsets_are_stored_per_partition_and_never_move_back(store: MemoryStore, version: int) -> None:
    store.write_batch(
        [], [ConsumedOffset("g", "t", 0, 5), ConsumedOffset("g", "t", 1, 9), ConsumedOffset("g", "t", 0, 7)]
    )
    store.write_batch(
        [], [ConsumedOffset("g", "t", 0, 3), ConsumedOffset("h", "t", 0, 1), ConsumedOffset("g", "u", 2, 4)]
    )
    assert store.stored_offsets("g", "t") == {0: 7, 1: 9}
    assert store.stored_offsets("h", "t") == {0: 1}
    assert store.stored_offsets("g", "u") == {2: 4}
    assert store.stored_offsets("nobody", "t") == {}


def test_documents_keep_metadata_and_source_position(store: MemoryStore, version: int) -> None:
    d = doc("a/b?c", list(range(12)), version, position=SourcePosition("docs.clean", 3, 41))
    store.write_batch([d])
    got = store.document("a/b?c")
    assert got is not None
    assert (got.source, got.url, got.title, got.k, got.codebook_version) == (
        "reuters",
        "https://example.org/a/b?c",
        "title of a/b?c",
        12,
        version,
    )
    assert got.published_at == T0 and got.published_at.tzinfo is not None
    assert got.codes == d.codes and got.indices == tuple(range(12))
    assert got.position == SourcePosition("docs.clean", 3, 41)
    assert got.content_sha256 == d.content_sha256


def test_invalid_records_are_refused_before_anything_is_written(store: MemoryStore, version: int) -> None:
    good = doc("ok", [1] * 12, version)
    bad = [
        doc("v", [1] * 12, version + 99),  # unknown codebook version
        replace(good, id="short", codes=good.codes[:-1]),
        replace(good, id="hash", content_sha256="xyz"),
        replace(good, id="fmt", code_format=3),
        replace(good, id=""),
        replace(good, id="k", k=0),
    ]
    for b in bad:
        with pytest.raises((InvalidRecord, UnknownCodebookVersion)):
            store.write_batch([good, b])
    # a code index >= C that still fits in the bits: C = 300 -> 9 bits, 511 is out of range
    small = store.add_codebook_version(codebook(num_codes=300))
    too_big = replace(doc("big", [1] * 12, small, num_codes=300), codes=doc("x", [511] * 12, version).codes)
    with pytest.raises(InvalidRecord, match="code"):
        store.write_batch([too_big])
    assert store.stats().documents == 0


def test_delete_updates_counts_exactly(store: MemoryStore, version: int) -> None:
    store.write_batch([doc("a", [1, 1, 2], version), doc("b", [2, 3, 3], version, source="other")])
    assert store.delete_document("a") is True
    assert store.delete_document("a") is False
    assert as_dict(store.counts()) == {(version, 2): 1, (version, 3): 2}
    assert as_dict(store.counts(source="reuters")) == {}
    assert as_dict(store.counts(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1))) == recount(
        store, T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    )
    assert store.delete_documents(["b", "zzz"]) == ["b"]
    assert store.counts() == [] and store.counts(source="other") == []
    # a deleted id can be written again, and counts follow
    store.write_batch([doc("a", [7] * 3, version)])
    assert as_dict(store.counts()) == {(version, 7): 3}


def test_codebook_versions_are_immutable_and_keep_their_vectors(store: MemoryStore) -> None:
    vectors = codebook(num_codes=64, dim=8, seed=3)
    v1 = store.add_codebook_version(vectors, health=CodebookHealth(perplexity=40.5, resets=3))
    v2 = store.add_codebook_version(vectors * 2, parent=v1)
    got = store.get_codebook(v1)
    np.testing.assert_array_equal(got.vectors, vectors)
    assert (got.info.num_codes, got.info.dim, got.info.parent_version) == (64, 8, None)
    assert got.info.health.perplexity == 40.5 and got.info.health.resets == 3
    assert [i.version for i in store.codebook_versions()] == [v1, v2]
    assert store.codebook_info(v2).parent_version == v1

    store.update_codebook_health(v1, CodebookHealth(perplexity=50.0, dead_codes=2, extra={"step": 7}))
    h = store.codebook_info(v1).health
    assert (h.perplexity, h.resets, h.dead_codes, h.extra) == (50.0, None, 2, {"step": 7})

    with store.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="immutable"):
        conn.execute(
            sa.text("UPDATE codebook_versions SET vectors = :b WHERE version = :v"), {"b": b"x", "v": v1}
        )
    with store.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="immutable"):
        conn.execute(sa.text("UPDATE codebook_versions SET dim = 9 WHERE version = :v"), {"v": v1})
    store.write_batch([doc("a", [1] * 4, v1, num_codes=64)])
    with store.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.text("DELETE FROM codebook_versions WHERE version = :v"), {"v": v1})
    with store.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="immutable"):
        conn.execute(sa.text("UPDATE documents SET codes = :b WHERE id = 'a'"), {"b": b"\0\0\0"})
    np.testing.assert_array_equal(store.get_codebook(v1).vectors, vectors)
    with pytest.raises(UnknownCodebookVersion):
        store.get_codebook(99)
    with pytest.raises(UnknownCodebookVersion):
        store.add_codebook_version(vectors, parent=99)
    with pytest.raises(InvalidRecord):
        store.add_codebook_version(np.full((4, 2), np.nan))


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_conflicting_writes_are_retried_then_given_up(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.retry import Backoff
    from memory_store import db

    monkeypatch.setattr(db, "WRITE_BACKOFF", Backoff(first_s=0, max_s=0))
    calls: list[int] = []

    def flaky(conn: sa.Connection) -> str:
        calls.append(1)
        conn.execute(
            sa.text("INSERT INTO sources (name, created_at) VALUES (:n, :t)"),
            {"n": f"s{len(calls)}", "t": T0},
        )
        if len(calls) < 3:
            raise sa.exc.OperationalError("INSERT …", {}, _Deadlock("deadlock detected"))
        return "done"

    assert db.run_write(store.engine, flaky) == "done" and len(calls) == 3
    assert table_count(store, "sources") == 1  # the two failed attempts were rolled back

    def always(conn: sa.Connection) -> None:
        raise sa.exc.OperationalError("INSERT …", {}, _Deadlock("deadlock detected"))

    with pytest.raises(StoreBusy, match="gave up after 8 attempts"):
        db.run_write(store.engine, always)


def test_counts_per_codebook_version_and_position_checks(store: MemoryStore, version: int) -> None:
    small = store.add_codebook_version(codebook(num_codes=8, dim=4))
    store.write_batch([doc("a", [1, 1, 7], small, num_codes=8), doc("b", [3, 3], version, source="other")])
    assert sorted(store.counts()) == sorted(
        [CodeCount(small, 1, 2), CodeCount(small, 7, 1), CodeCount(version, 3, 2)]
    )
    assert store.counts(source="other") == [CodeCount(version, 3, 2)]
    assert store.counts(version=small) == [CodeCount(small, 1, 2), CodeCount(small, 7, 1)]
    assert store.codebook_info(small).num_codes == 8 and store.codebook_info(version).num_codes == 512
    for bad in (SourcePosition("", 0, 0), SourcePosition("t", -1, 0), SourcePosition("t", 0, -5)):
        with pytest.raises(InvalidRecord, match="position"):
            store.write_batch([doc("c", [1], version, position=bad)])
