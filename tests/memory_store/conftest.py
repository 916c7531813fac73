from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memory_store.store import MemoryStore
from tests.memory_store.helpers import codebook


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[MemoryStore]:
    """A migrated store on a fresh database (SQLite file or Postgres), FAISS indexes in tmp_path."""
    s = MemoryStore(db_url, auto_migrate=True, index_dir=tmp_path / "faiss")
    yield s
    s.close()


@pytest.fixture
def version(store: MemoryStore) -> int:
    """A 512 x 16 codebook stored as the first version."""
    return store.add_codebook_version(codebook())
