"""The SQL views for people (created by migration 0002) and a helper to read them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from memory_store.errors import StoreError

VIEWS: dict[str, str] = {
    "memory_growth_hourly": "documents, code bytes and float-equivalent bytes per UTC hour of ingestion, cumulative, ratio",
    "memory_growth_daily": "the same per UTC day",
    "codebook_usage": "per codebook version: documents, stored codes, codes used, health stats",
    "source_activity": "per source: documents, code bytes, first/last published, last seen",
    "code_counts_by_day": "exact stored codes per (UTC day of publication, source, version, code)",
}
_ORDER = {
    "memory_growth_hourly": "bucket DESC",
    "memory_growth_daily": "bucket DESC",
    "codebook_usage": "version",
    "source_activity": "source",
    "code_counts_by_day": "day DESC, source, codebook_version, code",
}


def read_view(
    engine: sa.Engine, name: str, limit: int | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Columns and rows of view ``name`` (growth views newest first, then put back in time order)."""
    if name not in VIEWS:
        raise KeyError(name)
    sql = f"SELECT * FROM {name} ORDER BY {_ORDER[name]}"  # name checked against VIEWS above
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(sql))
            columns = list(result.keys())
            rows = [tuple(r) for r in result]
    except sa.exc.DBAPIError as e:
        first = str(e.orig).strip().splitlines()[0] if e.orig else type(e).__name__
        raise StoreError(
            f"cannot read view {name}: {first} (is the schema current? `mbc store migrate`)"
        ) from None
    if name.startswith("memory_growth"):
        rows.reverse()
    return columns, rows
