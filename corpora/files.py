"""Line-aware row readers for JSON Lines and CSV files (``.gz`` read transparently): every problem
names the file and the line. Every format in this package reads its rows through here."""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from corpora.errors import DatasetError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # news articles can be long


def open_text(path: Path) -> IO[str]:
    """``path`` as UTF-8 text without newline translation (CSV needs that); ``.gz`` decompressed."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


@contextmanager
def opened(path: Path) -> Iterator[IO[str]]:
    """:func:`open_text`, with a missing file as ``<path>: file does not exist``."""
    try:
        handle = open_text(path)
    except FileNotFoundError:
        raise DatasetError(path, "file does not exist") from None
    with handle:
        yield handle


def jsonl_rows(handle: IO[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of an open JSON Lines file."""
    for n, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(path, f"not valid JSON: {e.msg}", line=n) from None
        if not isinstance(obj, dict):
            raise DatasetError(path, "expected a JSON object", line=n)
        yield n, obj


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines file."""
    with opened(path) as handle:
        yield from jsonl_rows(handle, path)


def csv_rows(
    handle: IO[str], path: Path, required: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line of the record, row) for each record of an open CSV file, strictly: every record
    has as many fields as the header, and the ``required`` columns exist and are not blank."""
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(path, "empty file (no header row)", line=1) from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(path, f"missing column(s) {', '.join(missing)}; header is {header}", line=1)
    end = reader.line_num
    for record in reader:
        start, end = end + 1, reader.line_num
        if not record:
            continue
        if len(record) != len(header):
            raise DatasetError(path, f"expected {len(header)} fields, found {len(record)}", line=start)
        row = dict(zip(header, record, strict=True))
        empty = [c for c in required if not row[c].strip()]
        if empty:
            raise DatasetError(path, f"empty value in column(s) {', '.join(empty)}", line=start)
        yield start, row


def read_csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """:func:`csv_rows` of the file at ``path``."""
    with opened(path) as handle:
        yield from csv_rows(handle, path, required)


def loose_csv_rows(handle: IO[str], path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(last line of the record, row with lower-cased column names) for each record of an open CSV
    file of news documents, which may be ragged: a short row lacks its last columns, extra fields
    are dropped. The line is the record's last one because undated, id-less rows are named after
    it (``row-<line>``, :mod:`corpora.documents`), and stored ids must not change."""
    reader = csv.DictReader(handle)
    if not reader.fieldnames:
        raise DatasetError(path, "empty CSV file")
    for row in reader:
        yield reader.line_num, {k.strip().lower(): v for k, v in row.items() if k}


def field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path, line: int) -> Any:
    """``obj[key]`` checked for presence and type."""
    if key not in obj:
        raise DatasetError(path, f"missing field {key!r}", line=line)
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DatasetError(path, f"field {key!r}: expected {names}, got {type(value).__name__}", line=line)
    return value


def first(row: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of ``keys`` that ``row`` has and is not empty; None if none is."""
    for key in keys:
        value = row.get(key)
        if value not in (None, ""):
            return value
    return None


def parse_date(value: Any, path: Path, line: int) -> datetime | None:
    """An ISO 8601 date (no time zone means UTC) or UTC seconds, as an aware UTC datetime."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            return datetime.fromtimestamp(float(value), UTC)
        t = datetime.fromisoformat(str(value).strip())
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise DatasetError(path, f"unreadable date {value!r}", line=line) from None
