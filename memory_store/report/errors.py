"""Errors of ``mbc report``: conditions reported to the user as one line."""

from __future__ import annotations

from memory_store.errors import StoreError


class NothingToReport(StoreError):
    """The store holds no documents, so there is no growth, usage or ingest rate to plot."""


class ReportOutputError(StoreError):
    """The output directory cannot be created or written."""
