"""The numbers behind ``mbc report``, read from the store's SQL views in one snapshot.

Everything comes from the views analysts query (``memory_growth_hourly``/``_daily``,
``codebook_usage``, ``source_activity``) plus the health extras of each codebook version (JSON the
learner fills in: ``mean_quantization_error``, ``observed_docs``). Reading them inside one
read-only transaction (REPEATABLE READ on PostgreSQL, one WAL snapshot on SQLite) keeps the
totals, the curves and the tables consistent while a learner keeps writing.

Both backends return the same numbers but different types (``timestamp``/``date``/``numeric`` on
PostgreSQL, ISO text and floats on SQLite); the row types here are plain ``int``, ``float`` and
aware UTC ``datetime``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from memory_store import codebooks
from memory_store.db import display_url, read_transaction
from memory_store.models import documents
from memory_store.report.errors import NothingToReport
from memory_store.store import MemoryStore
from memory_store.timeutil import now, utc

_GROWTH_COLUMNS = (
    "bucket",
    "documents",
    "code_bytes",
    "float_equivalent_bytes",
    "cumulative_documents",
    "cumulative_code_bytes",
    "cumulative_float_equivalent_bytes",
)
_USAGE_COLUMNS = (
    "version",
    "parent_version",
    "num_codes",
    "dim",
    "documents",
    "stored_codes",
    "codes_used",
    "perplexity",
    "resets",
    "dead_codes",
)
_SOURCE_COLUMNS = ("source", "documents", "code_bytes", "last_seen_at")


@dataclass(frozen=True, slots=True)
class GrowthRow:
    """One UTC hour or day of ingestion: what was added, and the memory size after it."""

    bucket: datetime  # start of the hour / day, UTC
    documents: int
    code_bytes: int
    float_equivalent_bytes: int
    cumulative_documents: int
    cumulative_code_bytes: int
    cumulative_float_equivalent_bytes: int


@dataclass(frozen=True, slots=True)
class VersionRow:
    """A codebook version: how much of it stored documents use, and its health as measured."""

    version: int
    parent_version: int | None
    num_codes: int
    dim: int
    documents: int
    stored_codes: int
    codes_used: int
    perplexity: float | None
    resets: int | None
    dead_codes: int | None
    mean_quantization_error: float | None
    observed_docs: int | None

    @property
    def usage_fraction(self) -> float:
        """Distinct codes in use / C (exact, not the view's rounded column)."""
        return self.codes_used / self.num_codes


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A source with documents in the memory now."""

    source: str
    documents: int
    code_bytes: int
    last_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the plots and the summary need, from one consistent read."""

    database: str  # URL with the password masked
    backend: str
    generated_at: datetime
    first_ingested_at: datetime
    last_ingested_at: datetime
    hourly: tuple[GrowthRow, ...]
    daily: tuple[GrowthRow, ...]
    versions: tuple[VersionRow, ...]
    sources: tuple[SourceRow, ...]

    @property
    def documents(self) -> int:
        return self.daily[-1].cumulative_documents

    @property
    def code_bytes(self) -> int:
        return self.daily[-1].cumulative_code_bytes

    @property
    def float_equivalent_bytes(self) -> int:
        return self.daily[-1].cumulative_float_equivalent_bytes

    @property
    def bytes_per_document(self) -> float:
        return self.code_bytes / self.documents

    @property
    def compression_ratio(self) -> float:
        """Float-equivalent bytes / code bytes (codes are never empty, so code bytes > 0)."""
        return self.float_equivalent_bytes / self.code_bytes


def read_report_data(store: MemoryStore) -> ReportData:
    """Read the report's numbers; :class:`NothingToReport` when the store holds no documents."""
    with _snapshot(store) as conn:
        daily = _growth(conn, "memory_growth_daily")
        if not daily:
            raise NothingToReport(
                f"nothing to report: the store at {display_url(store.url)} holds no documents yet "
                "(start the learner, or check --database-url)"
            )
        hourly = _growth(conn, "memory_growth_hourly")
        versions = _versions(conn)
        sources = _sources(conn)
        first, last = conn.execute(
            sa.select(sa.func.min(documents.c.ingested_at), sa.func.max(documents.c.ingested_at))
        ).one()
    return ReportData(
        database=display_url(store.url),
        backend=store.backend,
        generated_at=now(),
        first_ingested_at=_when(first),
        last_ingested_at=_when(last),
        hourly=hourly,
        daily=daily,
        versions=versions,
        sources=sources,
    )


@contextmanager
def _snapshot(store: MemoryStore) -> Iterator[sa.Connection]:
    """A read-only transaction whose statements all see the same data."""
    with read_transaction(store.engine) as conn:
        if store.backend == "postgresql":  # READ COMMITTED would give each query its own snapshot
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn


def _select(conn: sa.Connection, view: str, columns: tuple[str, ...], order: str) -> list[dict[str, Any]]:
    # view, columns and order are constants of this module, never user input
    result = conn.execute(sa.text(f"SELECT {', '.join(columns)} FROM {view} ORDER BY {order}"))
    return [dict(row._mapping) for row in result]


def _growth(conn: sa.Connection, view: str) -> tuple[GrowthRow, ...]:
    return tuple(
        GrowthRow(
            bucket=_when(r["bucket"]),
            documents=int(r["documents"]),
            code_bytes=int(r["code_bytes"]),
            float_equivalent_bytes=int(r["float_equivalent_bytes"]),
            cumulative_documents=int(r["cumulative_documents"]),
            cumulative_code_bytes=int(r["cumulative_code_bytes"]),
            cumulative_float_equivalent_bytes=int(r["cumulative_float_equivalent_bytes"]),
        )
        for r in _select(conn, view, _GROWTH_COLUMNS, "bucket")
    )


def _versions(conn: sa.Connection) -> tuple[VersionRow, ...]:
    extras = {info.version: info.health.extra for info in codebooks.list_versions(conn)}
    out = []
    for r in _select(conn, "codebook_usage", _USAGE_COLUMNS, "version"):
        extra = extras.get(int(r["version"]), {})
        observed = _number(extra, "observed_docs")
        out.append(
            VersionRow(
                version=int(r["version"]),
                parent_version=_opt_int(r["parent_version"]),
                num_codes=int(r["num_codes"]),
                dim=int(r["dim"]),
                documents=int(r["documents"]),
                stored_codes=int(r["stored_codes"]),
                codes_used=int(r["codes_used"]),
                perplexity=None if r["perplexity"] is None else float(r["perplexity"]),
                resets=_opt_int(r["resets"]),
                dead_codes=_opt_int(r["dead_codes"]),
                mean_quantization_error=_number(extra, "mean_quantization_error"),
                observed_docs=None if observed is None else int(observed),
            )
        )
    return tuple(out)


def _sources(conn: sa.Connection) -> tuple[SourceRow, ...]:
    rows = _select(conn, "source_activity", _SOURCE_COLUMNS, "documents DESC, source")
    return tuple(
        SourceRow(
            source=str(r["source"]),
            documents=int(r["documents"]),
            code_bytes=int(r["code_bytes"]),
            last_seen_at=None if r["last_seen_at"] is None else _when(r["last_seen_at"]),
        )
        for r in rows
        if int(r["documents"]) > 0  # a source whose documents were all deleted is not in the memory
    )


def _when(value: Any) -> datetime:
    """A bucket or timestamp from either backend as an aware UTC datetime."""
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        return utc(datetime.fromisoformat(value))
    raise TypeError(f"not a time: {value!r}")


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _number(extra: Mapping[str, Any], key: str) -> float | None:
    """A finite number from the health extras, else None (the learner may leave it out or null)."""
    value = extra.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
