"""Views for people: memory growth per hour and per day, codebook usage, source activity, and
exact code counts per UTC day of publication and source.

Revision ID: 0002_views
Revises: 0001_schema
Create Date: 2026-11-26

Growth is bucketed by ``ingested_at`` in UTC (when the memory grew). The float-equivalent size is
what an uncompressed memory (MAC) would hold for the same documents: K × D × 4 bytes each, D from
the codebook version. ``compression_ratio`` is cumulative float bytes / cumulative code bytes.
Buckets are ``timestamp`` (hour) / ``date`` (day) on PostgreSQL and ISO text on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_views"
down_revision: str | None = "0001_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUCKETS = {
    "postgresql": {
        "hour": "date_trunc('hour', d.ingested_at AT TIME ZONE 'UTC')",
        "day": "CAST(date_trunc('day', d.ingested_at AT TIME ZONE 'UTC') AS date)",
        "epoch_day": "DATE '1970-01-01' + c.day",
    },
    "sqlite": {
        "hour": "strftime('%Y-%m-%d %H:00:00', d.ingested_at)",
        "day": "strftime('%Y-%m-%d', d.ingested_at)",
        "epoch_day": "date(c.day * 86400, 'unixepoch')",
    },
}

_GROWTH = """
CREATE VIEW {name} AS
WITH per_bucket AS (
    SELECT {bucket} AS bucket,
           count(*) AS documents,
           CAST(sum(length(d.codes)) AS BIGINT) AS code_bytes,
           CAST(sum(CAST(d.k AS BIGINT) * c.dim * 4) AS BIGINT) AS float_equivalent_bytes
    FROM documents d
    JOIN codebook_versions c ON c.version = d.codebook_version
    GROUP BY 1
)
SELECT bucket,
       documents,
       code_bytes,
       float_equivalent_bytes,
       CAST(sum(documents) OVER w AS BIGINT) AS cumulative_documents,
       CAST(sum(code_bytes) OVER w AS BIGINT) AS cumulative_code_bytes,
       CAST(sum(float_equivalent_bytes) OVER w AS BIGINT) AS cumulative_float_equivalent_bytes,
       round(sum(float_equivalent_bytes) OVER w * 1.0 / sum(code_bytes) OVER w, 1) AS compression_ratio
FROM per_bucket
WINDOW w AS (ORDER BY bucket ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""

_CODEBOOK_USAGE = """
CREATE VIEW codebook_usage AS
SELECT v.version,
       v.parent_version,
       v.num_codes,
       v.dim,
       v.created_at,
       COALESCE(d.documents, 0) AS documents,
       COALESCE(u.stored_codes, 0) AS stored_codes,
       COALESCE(u.codes_used, 0) AS codes_used,
       round(COALESCE(u.codes_used, 0) * 1.0 / v.num_codes, 4) AS usage_fraction,
       v.perplexity,
       v.resets,
       v.dead_codes
FROM codebook_versions v
LEFT JOIN (
    SELECT codebook_version, count(*) AS documents FROM documents GROUP BY codebook_version
) d ON d.codebook_version = v.version
LEFT JOIN (
    SELECT codebook_version,
           CAST(sum(n) AS BIGINT) AS stored_codes,
           sum(CASE WHEN n > 0 THEN 1 ELSE 0 END) AS codes_used
    FROM code_counts GROUP BY codebook_version
) u ON u.codebook_version = v.version
"""

_SOURCE_ACTIVITY = """
CREATE VIEW source_activity AS
SELECT s.name AS source,
       count(d.id) AS documents,
       CAST(COALESCE(sum(length(d.codes)), 0) AS BIGINT) AS code_bytes,
       min(d.published_at) AS first_published_at,
       max(d.published_at) AS last_published_at,
       max(d.ingested_at) AS last_seen_at
FROM sources s
LEFT JOIN documents d ON d.source_id = s.id
GROUP BY s.id, s.name
"""

_CODE_COUNTS_BY_DAY = """
CREATE VIEW code_counts_by_day AS
SELECT {epoch_day} AS day, s.name AS source, c.codebook_version, c.code, c.n
FROM code_counts_daily c
JOIN sources s ON s.id = c.source_id
WHERE c.n > 0
"""

VIEWS = (
    "memory_growth_hourly",
    "memory_growth_daily",
    "codebook_usage",
    "source_activity",
    "code_counts_by_day",
)


def upgrade() -> None:
    buckets = _BUCKETS[op.get_context().dialect.name]
    for name, unit in (("memory_growth_hourly", "hour"), ("memory_growth_daily", "day")):
        op.execute(_GROWTH.format(name=name, bucket=buckets[unit]))
    op.execute(_CODEBOOK_USAGE)
    op.execute(_SOURCE_ACTIVITY)
    op.execute(_CODE_COUNTS_BY_DAY.format(epoch_day=buckets["epoch_day"]))


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")
