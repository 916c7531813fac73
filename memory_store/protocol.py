"""What the learner needs from a memory store: the :class:`Store` protocol.

The worker, the online codebook and the answerer depend on this protocol, never on the concrete
:class:`memory_store.store.MemoryStore` (SQLite or PostgreSQL through SQLAlchemy); only composition
roots (the ``mbc`` commands, ``mbc demo``) construct one. A test double or another backend needs
only these methods. mypy checks at the bottom of :mod:`memory_store.store` that the concrete class
satisfies the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from memory_store.records import (
    CodebookHealth,
    CodebookInfo,
    CodeCount,
    ConsumedOffset,
    DocumentRecord,
    RetrievedDocument,
    StoredCodebook,
    StoreStats,
    WriteResult,
)


class Store(Protocol):
    """The compressed memory: documents as code indices, codebook versions, consumed offsets."""

    def close(self) -> None: ...

    # -- writes (the worker) -----------------------------------------------------------------
    def write_batch(
        self, docs: Sequence[DocumentRecord], offsets: Sequence[ConsumedOffset] = ()
    ) -> WriteResult: ...

    def stored_offsets(self, group: str, topic: str) -> dict[int, int]: ...

    # -- codebook versions (the online codebook) ---------------------------------------------
    def add_codebook_version(
        self,
        vectors: npt.ArrayLike,
        parent: int | None = None,
        health: CodebookHealth | None = None,
        dtype: str = "float32",
        expect_latest: bool = False,
        groups: int = 1,
    ) -> int: ...

    def latest_codebook_version(self) -> int | None: ...

    def get_codebook(self, version: int) -> StoredCodebook: ...

    def codebook_info(self, version: int) -> CodebookInfo: ...

    def update_codebook_health(self, version: int, health: CodebookHealth) -> None: ...

    # -- reads (the answerer) ----------------------------------------------------------------
    def counts(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        version: int | None = None,
    ) -> list[CodeCount]: ...

    def slice_codes(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
        version: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...

    def use_key_book(
        self, key_book: Callable[[int, npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None
    ) -> None: ...

    def retrieve(
        self,
        query: Callable[[int, npt.NDArray[np.float32]], npt.ArrayLike],
        k: int,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
    ) -> list[RetrievedDocument]: ...

    def retrieve_by_text(
        self,
        question: str,
        k: int,
        since: datetime | None = None,
        until: datetime | None = None,
        source: str | None = None,
    ) -> list[RetrievedDocument]: ...

    def stats(self) -> StoreStats: ...
