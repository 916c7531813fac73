"""Dataset files → records in publication order.

Formats (``.gz`` files are read transparently):

- ``jsonl``: one JSON object per line; ``csv``: a header row, then one row per document. Columns
  are recognised by name: text ``text|body|content|context|article``, title ``title|headline``,
  id ``id|guid|doc_id`` (else the link, else the row number), date
  ``published_at|published|date|timestamp|publication_date`` (ISO 8601, or UTC seconds; no time
  zone means UTC), link ``url|link``, and optionally ``source``. Reuters-21578 as shipped in
  ../shared/data/reuters is ``jsonl``.
- ``squad``: the official SQuAD JSON; every paragraph (``context``) is one document, titled with
  its article, undated.
- ``streamingqa``: either the WMT news-docs lines the StreamingQA extraction script reads
  (``YYYYMMDD<TAB>base64 sentence-split text<TAB>base64 text``; id = the sorting key the script
  assigns), or StreamingQA question rows (jsonl/csv) carrying their evidence document
  (``evidence_id``, ``evidence_ts`` in UTC seconds, text in ``text|evidence|context``): each
  evidence document is replayed once.

Publication order: records are stably sorted by date; an undated record keeps its place after
the record before it in the file.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, get_args

from pipeline.errors import DatasetError

ReplayFormat = Literal["jsonl", "csv", "squad", "streamingqa"]
FORMATS: tuple[str, ...] = get_args(ReplayFormat)
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


def detect_format(path: Path) -> str:
    """The format implied by the file name; :class:`DatasetError` if it is ambiguous."""
    name = path.name.lower().removesuffix(".gz")
    if "streamingqa" in name or "streaminqa" in name or name.startswith("news-docs"):
        return "streamingqa"
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"), (".json", "squad")):
        if name.endswith(suffix):
            return fmt
    raise DatasetError(f"cannot tell the format of {path}; pass --format ({'|'.join(FORMATS)})")


def load_records(path: Path, fmt: str) -> list[Record]:
    """All records of the file, in publication order."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DatasetError(f"{path} does not exist or is not a file")
    try:
        with _open(path) as f:
            records = list(_READERS[fmt](f, path))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
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


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _jsonl_rows(f: IO[str], path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{n}: expected a JSON object per line")
        yield n, row


def _csv_rows(f: IO[str], path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(f)
    if not reader.fieldnames:
        raise DatasetError(f"{path}: empty CSV file")
    for row in reader:
        yield reader.line_num, {k.strip().lower(): v for k, v in row.items() if k}


def _generic(rows: Iterator[tuple[int, Mapping[str, Any]]], path: Path) -> Iterator[Record]:
    for n, row in rows:
        if not any(k in row for k in TEXT_KEYS):
            raise DatasetError(f"{path}:{n}: no text column (one of {', '.join(TEXT_KEYS)})")
        text = _first(row, TEXT_KEYS) or ""  # an empty body is replayed as is (the stage rejects it)
        url = _first(row, URL_KEYS)
        ref = _first(row, ID_KEYS) or url or f"row-{n}"
        yield Record(
            ref=str(ref),
            text=str(text),
            title=str(_first(row, TITLE_KEYS) or ""),
            published_at=_date(_first(row, DATE_KEYS), path, n),
            url=str(url) if url else None,
            source=str(row["source"]) if row.get("source") else None,
        )


def _read_jsonl(f: IO[str], path: Path) -> Iterator[Record]:
    return _generic(_jsonl_rows(f, path), path)


def _read_csv(f: IO[str], path: Path) -> Iterator[Record]:
    return _generic(_csv_rows(f, path), path)


def _read_squad(f: IO[str], path: Path) -> Iterator[Record]:
    try:
        data = json.load(f)["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not SQuAD JSON ({type(e).__name__}: {e})") from None
    for article in data:
        title = str(article.get("title", "")).replace("_", " ")
        for i, paragraph in enumerate(article.get("paragraphs", [])):
            yield Record(
                ref=f"{article.get('title', '')}/{i}", text=str(paragraph.get("context", "")), title=title
            )


def _read_streamingqa(f: IO[str], path: Path) -> Iterator[Record]:
    first = f.readline()
    f.seek(0)
    if _is_wmt_line(first):
        yield from _wmt_docs(f, path)
        return
    rows = _csv_rows(f, path) if ".csv" in path.name.lower() else _jsonl_rows(f, path)
    seen: set[str] = set()
    for n, row in rows:
        text = _first(row, ("text", "evidence", "context", "evidence_text"))
        if text is None:
            raise DatasetError(f"{path}:{n}: no evidence text column (text|evidence|context)")
        ref = str(row.get("evidence_id") or hashlib.sha256(str(text).encode()).hexdigest())
        if ref in seen:
            continue
        seen.add(ref)
        yield Record(ref=ref, text=str(text), published_at=_date(row.get("evidence_ts"), path, n))


def _is_wmt_line(line: str) -> bool:
    parts = line.rstrip("\r\n").split("\t")
    return len(parts) == 3 and len(parts[0]) == 8 and parts[0].isdigit()


def _wmt_docs(f: IO[str], path: Path) -> Iterator[Record]:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if len(parts) != 3:
            raise DatasetError(f"{path}:{n}: expected DATE<TAB>split text<TAB>text")
        day, split_text, unsplit = parts
        try:
            published = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
            text = base64.b64decode(split_text, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}:{n}: {e}") from None
        digest = hashlib.sha256(unsplit.encode()).hexdigest()
        sorting_key = "\x00\x01".join([published.strftime("%Y%m%d%H%M%S%f"), digest, ""])
        yield Record(ref=sorting_key, text=text, published_at=published)


def _first(row: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = row.get(key)
        if value not in (None, ""):
            return value
    return None


def _date(value: Any, path: Path, line: int) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            return datetime.fromtimestamp(float(value), UTC)
        t = datetime.fromisoformat(str(value).strip())
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise DatasetError(f"{path}:{line}: unreadable date {value!r}") from None


_READERS = {"jsonl": _read_jsonl, "csv": _read_csv, "squad": _read_squad, "streamingqa": _read_streamingqa}
