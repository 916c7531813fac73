"""The document-key index of a store: one :class:`~memory_store.doc_keys.KeyIndex` per codebook
version, built from the database, following every writer through ``document_log``.

* **Built on start** (first use) from the ``documents`` table: every document's key from its codes
  and its codebook version (:func:`~memory_store.doc_keys.document_keys`). The log position is read
  *before* the scan, so whatever commits during the scan is replayed after it.
* **Updated as documents are written or deleted**, by any process: writes and deletions append to
  ``document_log`` in their own transaction (:func:`log_changes`); :meth:`DocumentIndex.refresh`
  reconciles every document named since its position with the ``documents`` table — present: has a
  key; absent: has none. It rereads the last :data:`LOG_OVERLAP` entries each time, so that a
  Postgres transaction that drew its sequence number earlier but committed later is not missed.
* **The database is the truth**: :meth:`MemoryStore.retrieve` reads the candidates back from
  ``documents`` (with the slice's bounds) before anyone sees them, so a document deleted a moment ago
  is never answered from or cited, even before the next refresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from memory_store import codec
from memory_store.db import read_transaction
from memory_store.doc_keys import KeyIndex, document_keys
from memory_store.models import document_log, documents

ADD, DELETE = 1, 2  # document_log.op
LOG_OVERLAP = 256  # log entries reread at every refresh (late commits of earlier sequence numbers)
_SCAN_CHUNK = 20_000  # documents decoded at a time while building


def log_changes(conn: Connection, ids: Iterable[str], op: int) -> None:
    """Append ``ids`` with ``op`` to ``document_log`` (inside the transaction that made the change)."""
    rows = [{"doc_id": i, "op": op} for i in sorted(set(ids))]
    if rows:
        conn.execute(sa.insert(document_log), rows)


@dataclass(frozen=True, slots=True)
class Hit:
    """A document the index found: its id, codebook version and inner-product score."""

    doc_id: str
    version: int
    score: float


KeyBook = Callable[
    [int, npt.NDArray[np.float32]], npt.NDArray[np.float32]
]  # (v, stored (G·C, d)) -> (G·C, d')


class DocumentIndex:
    """Keys of every stored document, by codebook version; thread-safe."""

    def __init__(
        self,
        engine: Engine,
        codebook: Callable[[int], npt.NDArray[np.float32]],
        layouts: Callable[[], Mapping[int, codec.CodeLayout]],
        flat_limit: int | None = None,
        refresh_s: float = 1.0,
        key_device: str | None = None,
    ) -> None:
        """``codebook(v)``: version v's stored vectors (G·C, d); ``layouts()``: version -> (C, G);
        ``refresh_s``: the least time between two reads of the log (deletions need none: see above);
        ``flat_limit``: documents a version searches exactly (default: by key size, :mod:`doc_keys`);
        ``key_device``: a torch device that flat indexes also search on (a GPU reader's, e.g. "cuda")."""
        self.engine, self._codebook, self._layouts = engine, codebook, layouts
        self.flat_limit, self.refresh_s, self.key_device = flat_limit, refresh_s, key_device
        self.versions: dict[int, KeyIndex] = {}
        self._ids: dict[str, tuple[int, int]] = {}  # doc id -> (version, int id)
        self._names: dict[int, str] = {}  # int id -> doc id
        self._next = 0
        self._cursor = 0  # highest document_log.seq applied
        self._built = False
        self._last_refresh = 0.0
        self._books: dict[int, npt.NDArray[np.float32]] = {}
        self._key_book: KeyBook | None = None
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    # -- building and following --------------------------------------------------------------------

    def build(self) -> None:
        """(Re)build every version's keys from the ``documents`` table."""
        with self._lock, read_transaction(self.engine) as conn:
            cursor = _max_seq(conn)
            per: dict[int, tuple[list[int], list[npt.NDArray[np.float32]]]] = {}
            self._ids, self._names, self._next = {}, {}, 0
            self._reset_keys()
            q = sa.select(*self._columns())
            rows = conn.execution_options(yield_per=_SCAN_CHUNK).execute(q.order_by(documents.c.id))
            for chunk in rows.partitions(_SCAN_CHUNK):
                for v, (names, keys) in self._keys(chunk).items():
                    ids, parts = per.setdefault(v, ([], []))
                    new = [self._assign(n, v) for n in names]
                    self._indexed(np.asarray(new, np.int64), keys)
                    ids.extend(new)
                    parts.append(keys)
            self.versions = {
                v: KeyIndex.build(
                    v, np.asarray(ids, np.int64), np.concatenate(parts), self.flat_limit, self.key_device
                )
                for v, (ids, parts) in per.items()
            }
            self._cursor, self._built, self._last_refresh = cursor, True, time.monotonic()

    def refresh(self, force: bool = False) -> None:
        """Apply what ``document_log`` recorded since the last refresh (build on first use)."""
        with self._lock:
            if not self._built:
                self.build()
                return
            if not force and time.monotonic() - self._last_refresh < self.refresh_s:
                return
            with read_transaction(self.engine) as conn:
                log = conn.execute(
                    sa.select(document_log.c.seq, document_log.c.doc_id).where(
                        document_log.c.seq > self._cursor - LOG_OVERLAP
                    )
                ).all()
                touched = sorted({r.doc_id for r in log})
                present = _rows(conn, touched, self._columns())
            self._last_refresh = time.monotonic()
            if not log:
                return
            stored = {r.id for r in present}
            self._remove([i for i in touched if i not in stored])
            self._add([r for r in present if r.id not in self._ids])
            self._cursor = max(self._cursor, max(r.seq for r in log))

    def _add(self, rows: list[sa.Row]) -> None:  # type: ignore[type-arg]
        for v, (names, keys) in self._keys(rows).items():
            ids = np.asarray([self._assign(n, v) for n in names], np.int64)
            self._indexed(ids, keys)
            if v not in self.versions:
                self.versions[v] = KeyIndex(v, int(keys.shape[1]), self.flat_limit, self.key_device)
            self.versions[v].add(ids, keys)

    def _remove(self, names: list[str]) -> None:
        by_version: dict[int, list[int]] = {}
        for n in names:
            if (entry := self._ids.pop(n, None)) is not None:
                by_version.setdefault(entry[0], []).append(entry[1])
                del self._names[entry[1]]
        for v, ids in by_version.items():
            self._unindexed(np.asarray(ids, np.int64))
            self.versions[v].remove(np.asarray(ids, np.int64))

    def _assign(self, name: str, version: int) -> int:
        self._ids[name] = (version, self._next)
        self._names[self._next] = name
        self._next += 1
        return self._next - 1

    # -- what a key is (SketchIndex, memory_store.sketch_index, overrides these) -------------------

    def _columns(self) -> tuple[sa.ColumnElement[Any], ...]:
        """The ``documents`` columns :meth:`_keys` reads."""
        d = documents.c
        return (d.id, d.codebook_version, d.k, d.code_format, d.codes)

    def _reset_keys(self) -> None:
        """Before a build: forget what :meth:`_indexed` kept."""

    def _indexed(self, ids: npt.NDArray[np.int64], keys: npt.NDArray[np.float32]) -> None:
        """Keys (n, d) of int ids (n,) just entered an index."""

    def _unindexed(self, ids: npt.NDArray[np.int64]) -> None:
        """Int ids (n,) are about to leave an index."""

    def _keys(self, rows: Iterable[sa.Row]) -> dict[int, tuple[list[str], npt.NDArray[np.float32]]]:  # type: ignore[type-arg]
        """Rows (id, codebook_version, k, code_format, codes) -> per version: (ids, keys (n, d))."""
        batches: dict[tuple[int, int, int], list[tuple[str, bytes]]] = {}
        for r in rows:
            key = (int(r.codebook_version), int(r.k), int(r.code_format))
            batches.setdefault(key, []).append((r.id, bytes(r.codes)))
        layouts = self._layouts()
        out: dict[int, tuple[list[str], npt.NDArray[np.float32]]] = {}
        for (v, k, fmt), members in batches.items():
            codes = codec.unpack_stored([b for _, b in members], k, layouts[v], fmt)  # (n, K)
            keys = document_keys(codes, self._book(v))
            names, parts = out.get(v, ([], np.zeros((0, keys.shape[1]), np.float32)))
            out[v] = (names + [n for n, _ in members], np.concatenate([parts, keys]))
        return out

    def use_key_book(self, key_book: KeyBook | None) -> None:
        """Derive every key from ``key_book(v, stored vectors)`` (G·C, d') instead of the stored code
        vectors (G·C, d): a reader's learned keys (:mod:`learner.keys`); queries then get that book.
        None: back to the stored vectors. The index is rebuilt on its next use."""
        with self._lock:
            self._key_book, self._books, self.versions, self._built = key_book, {}, {}, False

    def _book(self, version: int) -> npt.NDArray[np.float32]:
        if version not in self._books:
            book = self._codebook(version)
            if self._key_book is not None:
                book = np.ascontiguousarray(self._key_book(version, book), dtype=np.float32)
            self._books[version] = book
        return self._books[version]

    # -- searching ---------------------------------------------------------------------------------

    def search(
        self,
        query: Callable[[int, npt.NDArray[np.float32]], npt.ArrayLike],
        k: int,
        allowed: set[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` best documents over every version, by score; ``query(v, book)`` gives the query
        vector (d,) for version v from its stored code vectors ``book`` (G·C, d)."""
        with self._lock:
            hits: list[Hit] = []
            for v, index in self.versions.items():
                within = None
                if allowed is not None:
                    within = np.asarray(
                        [e[1] for n in allowed if (e := self._ids.get(n)) and e[0] == v], np.int64
                    )
                    if not len(within):
                        continue
                scores, ids = index.search(query(v, self._book(v)), k, within)
                hits += [Hit(self._names[int(i)], v, float(s)) for s, i in zip(scores, ids, strict=True)]
        hits.sort(key=lambda h: (-h.score, h.doc_id))
        return hits[:k]

    def memory_bytes(self) -> int:
        """Bytes of every version's FAISS index (the id maps in Python come on top)."""
        with self._lock:
            return sum(i.memory_bytes() for i in self.versions.values())

    def describe(self) -> dict[str, object]:
        with self._lock:
            return {
                "documents": len(self._ids),
                "versions": {
                    v: {"documents": i.size, "index": i.kind}
                    | ({"searched_on": str(i.on_device.device)} if i.on_device is not None else {})
                    for v, i in self.versions.items()
                },
                "log_position": self._cursor,
            }


def _max_seq(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(document_log.c.seq), 0))).scalar_one())


def _rows(conn: Connection, ids: list[str], columns: tuple[sa.ColumnElement[Any], ...]) -> list[sa.Row]:  # type: ignore[type-arg]
    out: list[sa.Row] = []  # type: ignore[type-arg]
    for i in range(0, len(ids), 500):
        q = sa.select(*columns).where(documents.c.id.in_(ids[i : i + 500]))
        out += conn.execute(q).all()
    return out
