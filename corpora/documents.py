"""Dataset files → news documents (:class:`Record`) in publication order, for the replay producer.

Formats are in :mod:`corpora.formats`; ``.gz`` files are read transparently. In ``jsonl`` and
``csv`` files columns are recognised by name: text ``text|body|content|context|article``, title
``title|headline``, id ``id|guid|doc_id`` (else the link, else the row's line), date
``published_at|published|date|timestamp|publication_date`` (ISO 8601, or UTC seconds; no time zone
means UTC), link ``url|link``, and optionally ``source``. Reuters-21578 as shipped in
../shared/data/reuters is ``jsonl``. ``squad`` and ``streamingqa`` are read by
:mod:`corpora.squad` and :mod:`corpora.streamingqa`.

Publication order: records are stably sorted by date; an undated record keeps its place after
the record before it in the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from corpora.errors import DatasetError
from corpora.files import first, jsonl_rows, loose_csv_rows, open_text, parse_date
from corpora.formats import DOCUMENT_FORMATS
from corpora.squad import squad_paragraphs
from corpora.streamingqa import evidence_documents, is_wmt_line, wmt_documents

TEXT_KEYS = ("text", "body", "content", "context", "article")
TITLE_KEYS = ("title", "headline")
ID_KEYS = ("id", "guid", "doc_id")
DATE_KEYS = ("published_at", "published", "date", "timestamp", "publication_date")
URL_KEYS = ("url", "link")


@dataclass(frozen=True, slots=True)
class Record:
    """One document of a dataset, before it becomes a :class:`~pipeline.events.Document`."""

    ref: str
    text: str
    title: str = ""
    published_at: datetime | None = None
    url: str | None = None
    source: str | None = None


def load_records(path: Path, fmt: str) -> list[Record]:
    """All records of the file, in publication order."""
    if fmt not in DOCUMENT_FORMATS:
        raise DatasetError(None, f"unknown format {fmt!r}; expected one of {', '.join(DOCUMENT_FORMATS)}")
    if not path.is_file():
        raise DatasetError(None, f"{path} does not exist or is not a file")
    try:
        with open_text(path) as f:
            records = list(_READERS[fmt](f, path))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DatasetError(None, f"cannot read {path}: {e}") from e
    return publication_order(records)


def publication_order(records: list[Record]) -> list[Record]:
    """Stable sort by date; undated records keep their place after their predecessor."""
    keyed = []
    last = datetime.min.replace(tzinfo=UTC)
    for i, r in enumerate(records):
        last = r.published_at or last
        keyed.append((last, i, r))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in keyed]


def _columns(rows: Iterator[tuple[int, Mapping[str, Any]]], path: Path) -> Iterator[Record]:
    for n, row in rows:
        if not any(k in row for k in TEXT_KEYS):
            raise DatasetError(path, f"no text column (one of {', '.join(TEXT_KEYS)})", line=n)
        text = first(row, TEXT_KEYS) or ""  # an empty body is replayed as is (the stage rejects it)
        url = first(row, URL_KEYS)
        ref = first(row, ID_KEYS) or url or f"row-{n}"
        yield Record(
            ref=str(ref),
            text=str(text),
            title=str(first(row, TITLE_KEYS) or ""),
            published_at=parse_date(first(row, DATE_KEYS), path, n),
            url=str(url) if url else None,
            source=str(row["source"]) if row.get("source") else None,
        )


def _read_jsonl(f: IO[str], path: Path) -> Iterator[Record]:
    return _columns(jsonl_rows(f, path), path)


def _read_csv(f: IO[str], path: Path) -> Iterator[Record]:
    return _columns(loose_csv_rows(f, path), path)


def _read_squad(f: IO[str], path: Path) -> Iterator[Record]:
    for p in squad_paragraphs(f, path):
        yield Record(ref=f"{p.article}/{p.index}", text=p.context, title=p.article.replace("_", " "))


def _read_streamingqa(f: IO[str], path: Path) -> Iterator[Record]:
    head = f.readline()
    f.seek(0)
    docs = wmt_documents(f, path) if is_wmt_line(head) else evidence_documents(f, path)
    for d in docs:
        yield Record(ref=d.ref, text=d.text, published_at=d.published_at)


_READERS = {"jsonl": _read_jsonl, "csv": _read_csv, "squad": _read_squad, "streamingqa": _read_streamingqa}
