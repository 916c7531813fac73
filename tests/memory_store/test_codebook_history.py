"""Concurrent publishers keep one linear codebook history (docs/DESIGN.md §3b)."""

from __future__ import annotations

import threading

import pytest

from memory_store.errors import CodebookConflict
from memory_store.store import MemoryStore
from tests.memory_store.helpers import codebook


def test_compare_and_set_publication(store: MemoryStore) -> None:
    assert store.latest_codebook_version() is None
    root = store.add_codebook_version(codebook(), expect_latest=True)
    with pytest.raises(CodebookConflict):
        store.add_codebook_version(codebook(seed=1), expect_latest=True)  # a second root
    child = store.add_codebook_version(codebook(seed=2), parent=root, expect_latest=True)
    with pytest.raises(CodebookConflict):
        store.add_codebook_version(codebook(seed=3), parent=root, expect_latest=True)  # stale parent
    # Even without the check, a second child of the same parent is refused by the schema.
    with pytest.raises(CodebookConflict):
        store.add_codebook_version(codebook(seed=4), parent=root)
    assert store.latest_codebook_version() == child
    assert [(v.version, v.parent_version) for v in store.codebook_versions()] == [(root, None), (child, root)]


def test_concurrent_publishers_build_one_chain(store: MemoryStore) -> None:
    root = store.add_codebook_version(codebook(), expect_latest=True)
    per_thread, conflicts = 6, [0, 0]

    def publish(worker: int) -> None:
        done = 0
        while done < per_thread:
            parent = store.latest_codebook_version()
            try:
                store.add_codebook_version(
                    codebook(seed=100 * worker + done), parent=parent, expect_latest=True
                )
                done += 1
            except CodebookConflict:
                conflicts[worker] += 1

    threads = [threading.Thread(target=publish, args=(w,)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    versions = store.codebook_versions()
    assert len(versions) == 1 + 2 * per_thread
    parents = [v.parent_version for v in versions]
    assert parents == [None, *[v.version for v in versions[:-1]]]  # each version is the child of the previous
    assert versions[0].version == root
