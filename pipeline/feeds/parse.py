"""Feed bytes → documents, with feedparser (RSS 0.9x/1.0/2.0, Atom).

feedparser works out the character encoding from the HTTP Content-Type, the XML declaration and
byte-order marks; we hand it the response headers for that. A feed it cannot make sense of
("bozo" with no entries, or no feed at all) is a :class:`FeedError` naming the URL and what was
wrong; a feed with entries and a minor problem is used and the problem logged. These errors are
permanent for the bytes at hand (``retryable=False``): the poller tries the feed again at its next
poll, not within this one.
"""

from __future__ import annotations

import calendar
import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser

from infra.logging import get_logger
from pipeline.events import Document, make_document
from pipeline.feeds.fetch import FeedError
from pipeline.text import html_to_text, normalize_text

log = get_logger(__name__)


def parse_feed(
    content: bytes,
    source: str,
    *,
    headers: Mapping[str, str] | None = None,
    fetched_at: datetime | None = None,
) -> list[Document]:
    """Every entry of the feed as a :class:`Document` whose source is ``source`` (the feed URL)."""
    if not content.strip():
        raise FeedError(source, "empty response body", retryable=False)
    # A stream, never bytes or str: feedparser treats a string as a URL or a local file name.
    parsed = feedparser.parse(io.BytesIO(content), response_headers=dict(headers or {}))
    problem = parsed.get("bozo_exception")
    if not parsed.entries:
        if problem is not None:
            raise FeedError(source, f"malformed feed: {_describe(problem)}", retryable=False)
        if not parsed.get("version"):
            raise FeedError(source, "not an RSS or Atom feed", retryable=False)
        return []
    if problem is not None:
        log.warning("feed has problems; using its entries anyway", url=source, problem=_describe(problem))
    fetched_at = fetched_at or datetime.now(UTC)
    return [entry_to_document(e, source, fetched_at) for e in parsed.entries]


def entry_to_document(entry: Mapping[str, Any], source: str, fetched_at: datetime) -> Document:
    """One feed entry as a document; a body-less entry (headline only) uses its title as text."""
    title = _text(entry.get("title_detail") or {"value": entry.get("title", "")})
    bodies = [_text(c) for c in entry.get("content") or []]
    if entry.get("summary"):
        bodies.append(_text(entry.get("summary_detail") or {"value": entry["summary"]}))
    text = max(bodies, key=len, default="") or title
    link = entry.get("link") or None
    ref = entry.get("id") or link or f"{title}\x1f{entry.get('published', '')}"
    return make_document(
        source=source,
        ref=ref,
        text=text,
        title=title,
        url=link,
        published_at=_date(entry),
        fetched_at=fetched_at,
    )


def _text(detail: Mapping[str, Any]) -> str:
    value = str(detail.get("value") or "")
    if detail.get("type") == "text/plain":
        return normalize_text(value)
    return html_to_text(value)


def _date(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
