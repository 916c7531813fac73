"""Errors of the memory store. Each is a user-facing condition reported as one clear line."""

from __future__ import annotations

from infra.errors import MbcError


class StoreError(MbcError):
    """Base class of every memory-store error."""


class DatabaseUnreachable(StoreError):
    """The database named by the URL cannot be opened or reached."""


class MigrationNeeded(StoreError):
    """The database schema is not at the revision this build needs."""


class InvalidRecord(StoreError):
    """A document, offset or codebook handed to the store does not fit the schema or the codec."""


class UnknownCodebookVersion(StoreError):
    """A codebook version that is not stored was asked for or referenced."""


class UnknownDocument(StoreError):
    """A document id that is not stored was asked for."""


class StoreBusy(StoreError):
    """A write kept conflicting with other writers (deadlock, lock timeout) and was given up."""


class IndexUnavailable(StoreError):
    """A FAISS index could not be built or searched."""


class CodebookConflict(StoreError):
    """Another writer published a codebook version first; reload the newest version and retry."""
