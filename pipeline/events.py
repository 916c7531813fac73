"""The document event: the one place that defines what travels on ``docs.raw`` and ``docs.clean``.

A document is versioned JSON (UTF-8), Kafka key = ``id``::

    {"schema_version": 1, "id": "9f2c…", "source": "https://example.org/feed.xml",
     "url": "https://example.org/a/1", "title": "…", "text": "…",
     "published_at": "2026-11-26T12:00:00Z", "fetched_at": "2026-11-26T12:01:07Z",
     "content_sha256": "…"}

- ``id`` is derived from the source and the item's own reference (feed guid, else link; a
  dataset's row id), so polling a feed again maps an item to the same id (:func:`make_id`).
- ``published_at`` is UTC or ``null`` when the source gives no date; ``fetched_at`` is UTC.
- ``content_sha256`` is the SHA-256 of the normalized ``text`` (what duplicate detection uses).
- Unknown extra fields are ignored (and not forwarded); a different ``schema_version`` is rejected.

:func:`validate` turns raw message bytes into a clean :class:`Document` or a :class:`Rejection`
with a typed :class:`Reason`; the faust stage sends rejections to the dead-letter topic. This module
only needs the standard library (and :mod:`pipeline.text`), so any consumer can import it.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.contract import (
    MAX_DATE_CHARS,
    SHA256_HEX_CHARS,
    Limits,
    id_problem,
    source_problem,
    text_problem,
    url_problem,
)
from pipeline.text import normalize_text, normalize_title

SCHEMA_VERSION = 1
FIELDS = ("id", "source", "url", "title", "text", "published_at", "fetched_at", "content_sha256")


class Reason(enum.StrEnum):
    """Why a message was not accepted; the value is what the DLQ header and the metrics carry."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_VERSION = "unsupported_schema_version"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_FIELD = "invalid_field"
    EMPTY_TEXT = "empty_text"
    BAD_DATE = "bad_date"
    DATE_OUT_OF_RANGE = "date_out_of_range"
    KEY_MISMATCH = "key_mismatch"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that is not a valid document: the reason and a human-readable detail."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Document:
    """A clean document. Build new ones with :func:`make_document`, read them with :func:`validate`."""

    id: str
    source: str
    url: str | None
    title: str
    text: str
    published_at: datetime | None
    fetched_at: datetime
    content_sha256: str
    schema_version: int = field(default=SCHEMA_VERSION)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "id": self.id,
            "source": self.source,
            "url": self.url,
            "title": self.title,
            "text": self.text,
            "published_at": format_time(self.published_at) if self.published_at else None,
            "fetched_at": format_time(self.fetched_at),
            "content_sha256": self.content_sha256,
        }

    def to_json(self) -> bytes:
        """The message value: compact UTF-8 JSON with a fixed key order."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @property
    def key(self) -> bytes:
        """The Kafka key."""
        return self.id.encode()


def make_id(source: str, ref: str) -> str:
    """Stable document id: 32 hex digits of SHA-256 over the source and the item reference."""
    return hashlib.sha256(f"{source}\x1f{ref}".encode()).hexdigest()[:32]


def content_hash(text: str) -> str:
    """SHA-256 (hex) of already-normalized text."""
    return hashlib.sha256(text.encode()).hexdigest()


def format_time(t: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix (microseconds only when present)."""
    t = t.astimezone(UTC).replace(tzinfo=None)
    return t.isoformat(timespec="microseconds" if t.microsecond else "seconds") + "Z"


def make_document(
    *,
    source: str,
    ref: str,
    text: str,
    title: str = "",
    url: str | None = None,
    published_at: datetime | None = None,
    fetched_at: datetime | None = None,
) -> Document:
    """A producer-side document: normalizes title and text, derives id and content hash."""
    body = normalize_text(text)
    return Document(
        id=make_id(source, ref),
        source=source,
        url=url or None,
        title=normalize_title(title),
        text=body,
        published_at=published_at.astimezone(UTC) if published_at else None,
        fetched_at=(fetched_at or datetime.now(UTC)).astimezone(UTC),
        content_sha256=content_hash(body),
    )


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.rejection = Rejection(reason, detail)


def validate(
    value: bytes | None, *, key: bytes | None = None, now: datetime | None = None, limits: Limits = Limits()
) -> Document | Rejection:
    """Decode and check one raw message; normalize it into a clean :class:`Document`.

    ``now`` is the reference for date sanity (the stage passes the Kafka record timestamp so a
    replayed message is judged the same way twice); ``key``, when present, must equal the id.
    Never raises: whatever the bytes, the answer is a Document or a Rejection. A Document obeys
    the contract (:mod:`pipeline.contract`), so the memory store can hold it.
    """
    try:
        return _validate(value, key, now or datetime.now(UTC), limits)
    except _Invalid as e:
        return e.rejection
    except Exception as e:  # a gap in the checks must dead-letter one message, never stop a consumer
        return Rejection(Reason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"[:500])


def _validate(value: bytes | None, key: bytes | None, now: datetime, limits: Limits) -> Document:
    if not value:
        raise _Invalid(Reason.INVALID_JSON, "empty message")
    if len(value) > limits.max_message_bytes:
        raise _Invalid(Reason.TOO_LARGE, f"message is {len(value)} bytes, limit {limits.max_message_bytes}")
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Invalid(Reason.NOT_UTF8, f"byte {e.start}: {e.reason}") from None
    try:
        obj = json.loads(decoded)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, or an integer of > 4,300 digits
        raise _Invalid(Reason.INVALID_JSON, str(e)[:200]) from None
    if not isinstance(obj, dict):
        raise _Invalid(Reason.NOT_AN_OBJECT, f"top level is {type(obj).__name__}, expected object")
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _Invalid(Reason.UNSUPPORTED_VERSION, f"schema_version {version!r}, expected {SCHEMA_VERSION}")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise _Invalid(Reason.MISSING_FIELD, "missing " + ", ".join(missing))
    doc_id = _string(obj, "id")
    _check(id_problem(doc_id))
    if key is not None and key != doc_id.encode():
        raise _Invalid(Reason.KEY_MISMATCH, f"Kafka key {key[:80]!r} differs from id {doc_id!r}")
    source = _string(obj, "source")
    _check(source_problem(source))
    url = _string(obj, "url", nullable=True) or None
    _check(url_problem(url))
    _string(obj, "content_sha256", max_len=SHA256_HEX_CHARS)  # recomputed below; only its type is checked
    title = normalize_title(_string(obj, "title"))
    _check(text_problem("title", title))
    if len(title) > limits.max_title_chars:
        raise _Invalid(Reason.TOO_LARGE, f"title has {len(title)} characters, limit {limits.max_title_chars}")
    text = normalize_text(_string(obj, "text"))
    _check(text_problem("text", text))
    if not text:
        raise _Invalid(Reason.EMPTY_TEXT, "text is empty after normalization")
    size = len(text.encode())
    if size > limits.max_text_bytes:
        raise _Invalid(Reason.TOO_LARGE, f"text is {size} bytes, limit {limits.max_text_bytes}")
    try:
        latest = now.astimezone(UTC) + limits.max_clock_skew
    except OverflowError:
        latest = datetime.max.replace(tzinfo=UTC)
    published = _time(obj, "published_at", nullable=True)
    if published is not None and not limits.min_published_at <= published <= latest:
        raise _Invalid(Reason.DATE_OUT_OF_RANGE, f"published_at {format_time(published)} is implausible")
    fetched = _time(obj, "fetched_at")
    if not limits.min_published_at <= fetched <= latest:
        raise _Invalid(Reason.DATE_OUT_OF_RANGE, f"fetched_at {format_time(fetched)} is implausible")
    return Document(doc_id, source, url, title, text, published, fetched, content_hash(text))


def _check(problem: str | None) -> None:
    if problem is not None:
        raise _Invalid(Reason.INVALID_FIELD, problem)


def _string(obj: dict[str, Any], name: str, *, max_len: int | None = None, nullable: bool = False) -> Any:
    v = obj[name]
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        raise _Invalid(Reason.WRONG_TYPE, f"{name} is {type(v).__name__}, expected string")
    if max_len is not None and len(v) > max_len:
        raise _Invalid(Reason.INVALID_FIELD, f"{name} is longer than {max_len} characters")
    return v


def _time(obj: dict[str, Any], name: str, *, nullable: bool = False) -> Any:
    raw = _string(obj, name, max_len=MAX_DATE_CHARS, nullable=nullable)
    if raw is None:
        return None
    try:
        t = datetime.fromisoformat(raw)
        if t.tzinfo is None:
            raise _Invalid(Reason.BAD_DATE, f"{name} {raw!r} has no time zone")
        return t.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Invalid(Reason.BAD_DATE, f"{name} {raw!r} is not an ISO 8601 date") from None
