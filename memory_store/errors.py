"""Errors of the memory store. Each is a user-facing condition reported as one clear line.

The store never lets its driver's exceptions out of a read or write (:mod:`memory_store.db`
translates them), so a caller decides what to do from three kinds alone:

* :class:`StoreUnavailable` — wait and retry: the database cannot be reached or cannot take writes
  *now* (:class:`DatabaseUnreachable`: connection refused or lost, server shutting down or starting,
  too many connections, disk full, read-only / no write permission; :class:`StoreBusy`:
  deadlocks, serialization failures, lock and statement timeouts that kept happening). Nothing was
  written; the same call can succeed later unchanged.
* :class:`InvalidRecord` — do not retry the same data: a record breaks the schema, the codec or a
  constraint (integrity and data errors of the database, the limits of the document contract).
  Retrying the same records fails the same way; split them and set the offending ones aside.
* any other :class:`StoreError` (e.g. :class:`StoreFault`) — neither: a bug or a database that does
  not match this build. It must surface, not be waited out.
"""

from __future__ import annotations

from infra.errors import MbcError


class StoreError(MbcError):
    """Base class of every memory-store error."""


class StoreUnavailable(StoreError):
    """The database cannot serve this request now; the same request may succeed later."""


class DatabaseUnreachable(StoreUnavailable):
    """The database named by the URL cannot be opened, reached, or written to for now."""


class MigrationNeeded(StoreError):
    """The database schema is not at the revision this build needs."""


class InvalidRecord(StoreError):
    """A document, offset or codebook handed to the store does not fit the schema or the codec."""

    def __init__(self, message: str, doc_id: str | None = None) -> None:
        super().__init__(message)
        self.doc_id = doc_id  # the document at fault, when the store knows which one it is


class UnknownCodebookVersion(StoreError):
    """A codebook version that is not stored was asked for or referenced."""


class UnknownDocument(StoreError):
    """A document id that is not stored was asked for."""


class StoreBusy(StoreUnavailable):
    """A write kept conflicting with other writers (deadlock, lock timeout) and was given up."""


class IndexUnavailable(StoreError):
    """A FAISS index could not be built or searched."""


class CodebookConflict(StoreError):
    """Another writer published a codebook version first; reload the newest version and retry."""


class StoreFault(StoreError):
    """The database failed in a way neither waiting nor leaving a record out fixes (schema or
    privileges not matching this build, a bug in a statement)."""
