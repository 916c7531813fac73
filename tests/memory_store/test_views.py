"""The SQL views return the numbers worked out by hand for a small example."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from memory_store.records import CodebookHealth
from memory_store.store import MemoryStore
from tests.memory_store.helpers import codebook, doc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def norm(value: Any) -> Any:
    """Same form on both backends: timestamps as 'YYYY-MM-DD HH:MM' UTC, numbers as float/int."""
    if isinstance(value, str) and len(value) > 10 and value[:4].isdigit() and value[10] == " ":
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M")
    if hasattr(value, "isoformat"):  # a date
        return value.isoformat()
    if value is not None and not isinstance(value, int | str):
        return float(value)
    return value


def rows(store: MemoryStore, sql: str) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(norm(v) for v in r) for r in conn.execute(sa.text(sql))]


def test_views_on_a_hand_checked_example(store: MemoryStore) -> None:
    v1 = store.add_codebook_version(codebook(512, 16))  # 9 bits per code; a float code is 16 x 4 bytes
    v2 = store.add_codebook_version(
        codebook(4, 8), parent=v1, health=CodebookHealth(perplexity=1.9, resets=2)
    )
    store.write_batch(
        [
            # K=12 at 9 bits -> 14 bytes; float memory 12 x 16 x 4 = 768 bytes
            doc("d1", [0] * 12, v1, published_at=at("2024-02-29 23:00"), ingested_at=at("2024-03-01 10:15")),
            doc(
                "d2",
                [1, 2, 3] * 4,
                v1,
                published_at=at("2024-03-01 08:00"),
                ingested_at=at("2024-03-01 10:45"),
            ),
            # K=4 at 2 bits -> 1 byte; float 4 x 8 x 4 = 128 bytes
            doc("d3", [0, 0, 1, 1], v2, 4, "feeds", at("2024-03-01 11:00"), at("2024-03-01 12:05")),
            # K=6 at 9 bits -> 7 bytes; float 6 x 16 x 4 = 384 bytes
            doc("d4", [0, 1, 2, 3, 4, 5], v1, 512, "feeds", at("2024-03-01 20:00"), at("2024-03-02 00:30")),
        ]
    )
    assert rows(store, "SELECT * FROM memory_growth_hourly ORDER BY bucket") == [
        # bucket, docs, code bytes, float bytes, cumulative docs / code bytes / float bytes, ratio
        ("2024-03-01 10:00", 2, 28, 1536, 2, 28, 1536, 54.9),  # 1536 / 28 = 54.86
        ("2024-03-01 12:00", 1, 1, 128, 3, 29, 1664, 57.4),  # 1664 / 29 = 57.38
        ("2024-03-02 00:00", 1, 7, 384, 4, 36, 2048, 56.9),  # 2048 / 36 = 56.89
    ]
    assert rows(store, "SELECT * FROM memory_growth_daily ORDER BY bucket") == [
        ("2024-03-01", 3, 29, 1664, 3, 29, 1664, 57.4),
        ("2024-03-02", 1, 7, 384, 4, 36, 2048, 56.9),
    ]
    usage = "SELECT version, parent_version, num_codes, dim, documents, stored_codes, codes_used, usage_fraction, perplexity, resets FROM codebook_usage ORDER BY version"
    assert rows(store, usage) == [
        (v1, None, 512, 16, 3, 30, 6, 0.0117, None, None),  # codes {0..5} used: 6 / 512
        (v2, v1, 4, 8, 1, 4, 2, 0.5, 1.9, 2),
    ]
    activity = "SELECT * FROM source_activity ORDER BY source"
    assert rows(store, activity) == [
        ("feeds", 2, 8, "2024-03-01 11:00", "2024-03-01 20:00", "2024-03-02 00:30"),
        ("reuters", 2, 28, "2024-02-29 23:00", "2024-03-01 08:00", "2024-03-01 10:45"),
    ]

    by_day = "SELECT day, source, codebook_version, code, n FROM code_counts_by_day ORDER BY day, source, codebook_version, code"
    assert rows(store, by_day) == [
        ("2024-02-29", "reuters", v1, 0, 12),
        *[("2024-03-01", "feeds", v1, c, 1) for c in range(6)],
        *[("2024-03-01", "feeds", v2, c, 2) for c in (0, 1)],
        *[("2024-03-01", "reuters", v1, c, 4) for c in (1, 2, 3)],
    ]
    march = "SELECT code, sum(n) FROM code_counts_by_day WHERE day >= '2024-03-01' AND day < '2024-03-02' AND codebook_version = {v} GROUP BY code ORDER BY code"
    assert rows(store, march.format(v=v1)) == [(0, 1), (1, 5), (2, 5), (3, 5), (4, 1), (5, 1)]

    store.delete_document("d4")  # views follow deletions: codes 4 and 5 are no longer used
    assert rows(store, usage)[0][4:8] == (2, 24, 4, 0.0078)
    assert rows(store, "SELECT bucket, cumulative_code_bytes FROM memory_growth_daily") == [
        ("2024-03-01", 29)
    ]
    assert rows(store, activity)[0][:3] == ("feeds", 1, 1)
