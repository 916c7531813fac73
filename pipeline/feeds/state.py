"""What the feed poller has already published, kept in a small SQLite file in the state dir.

Two tables: ``published`` (document ids whose delivery Kafka confirmed) and ``http_cache`` (the
ETag / Last-Modified of each feed's last fully published response). Both are written only after
delivery reports arrived, so a crash can cause a re-publish (which the stage drops as a duplicate)
but never a gap.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.events import Document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS published (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    published_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS http_cache (
    url TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    updated_at TEXT NOT NULL
);
"""


class FeedState:
    """Seen-set and HTTP validators of the feed poller (one writer process per state dir)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "feeds.sqlite"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise PipelineError(f"cannot use feed state file {self.path}: {e}") from e

    def unpublished(self, docs: Iterable[Document]) -> list[Document]:
        """``docs`` without those already published (and without repeated ids), in order."""
        out: list[Document] = []
        seen: set[str] = set()
        for doc in docs:
            if doc.id in seen:
                continue
            seen.add(doc.id)
            if self._db.execute("SELECT 1 FROM published WHERE id = ?", (doc.id,)).fetchone() is None:
                out.append(doc)
        return out

    def mark_published(self, docs: Iterable[Document]) -> None:
        now = datetime.now(UTC).isoformat()
        rows = [(d.id, d.source, d.content_sha256, now) for d in docs]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO published VALUES (?, ?, ?, ?)", rows)

    def validators(self, url: str) -> tuple[str | None, str | None]:
        """(ETag, Last-Modified) of the feed's last fully published response."""
        row = self._db.execute("SELECT etag, last_modified FROM http_cache WHERE url = ?", (url,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def save_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO http_cache VALUES (?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET "
                "etag = excluded.etag, last_modified = excluded.last_modified, updated_at = excluded.updated_at",
                (url, etag, last_modified, datetime.now(UTC).isoformat()),
            )

    def close(self) -> None:
        self._db.close()
