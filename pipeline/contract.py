"""The document contract: the limits of a document, checked the same way by everyone who holds one.

The stage (:func:`pipeline.events.validate`), the learner worker (it re-validates what it consumes
with the same function) and the memory store (:func:`memory_store.writes.prepare`) import the
checks below, so a document the stage accepts is a document the store can hold
(``tests/pipeline/test_contract.py`` holds them, and the database column sizes, together).

Two kinds of limits:

* **fixed** — the fields the store keeps in sized columns or indexes: ``id`` (primary key,
  ``varchar(256)``), ``source`` (``sources.name``, ``varchar(200)``, unique), ``url``; and what
  PostgreSQL text cannot hold at all (NUL) or no UTF-8 encoder can write (lone surrogates);
* **tunable** (:class:`Limits`, from the stage's settings) — the fields only the stage and the
  model read: message size, text size, title length, date plausibility. Any value of these is
  storable.

This module imports only the standard library: ``memory_store`` may import it without importing
the rest of ``pipeline`` (no cycle; ``infra`` never imports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_ID_CHARS = 256  # documents.id varchar(256)
MAX_SOURCE_CHARS = 200  # sources.name varchar(200), unique (b-tree: 200 chars <= 800 UTF-8 bytes)
MAX_URL_CHARS = 8192  # documents.url text
MAX_DATE_CHARS = 64
SHA256_HEX_CHARS = 64

# Defaults of the tunable limits.
MAX_MESSAGE_BYTES = 1_000_000
MAX_TEXT_BYTES = 500_000
MAX_TITLE_CHARS = 1_000
MIN_DATE = datetime(1900, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Limits:
    """What the stage accepts beyond the fixed limits. Sizes are UTF-8 bytes; dates are checked
    against ``now`` (the record time), and must not be before ``min_published_at``."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_text_bytes: int = MAX_TEXT_BYTES
    max_title_chars: int = MAX_TITLE_CHARS
    min_published_at: datetime = MIN_DATE
    max_clock_skew: timedelta = MAX_CLOCK_SKEW


def unencodable(value: str) -> bool:
    """True if ``value`` holds a lone surrogate (valid in a Python str, not in UTF-8)."""
    return _SURROGATE.search(value) is not None


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a document id, or None."""
    if not value or len(value) > MAX_ID_CHARS:
        return f"id must have 1 to {MAX_ID_CHARS} characters"
    if _CONTROL.search(value) or unencodable(value):
        return "id must not contain control characters or lone surrogates"
    return None


def source_problem(value: str) -> str | None:
    """Why ``value`` cannot be a source name, or None."""
    if not value.strip() or len(value) > MAX_SOURCE_CHARS:
        return f"source must have 1 to {MAX_SOURCE_CHARS} characters, not only spaces"
    if _CONTROL.search(value) or unencodable(value):
        return "source must not contain control characters or lone surrogates"
    return None


def url_problem(value: str | None) -> str | None:
    """Why ``value`` cannot be a document URL (None is fine), or None."""
    if value is None:
        return None
    if len(value) > MAX_URL_CHARS:
        return f"url is longer than {MAX_URL_CHARS} characters"
    if _CONTROL.search(value) or unencodable(value):
        return "url must not contain control characters or lone surrogates"
    return None


def text_problem(name: str, value: str | None) -> str | None:
    """Why a free-text field (title, text) cannot be stored or encoded: NUL or lone surrogates."""
    if value is not None and ("\x00" in value or unencodable(value)):
        return f"{name} must not contain NUL or lone surrogates"
    return None
