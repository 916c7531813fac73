"""Line-aware readers for CSV and JSONL files: every problem names the file and the line."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from learner.errors import DataFormatError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # news articles can be long


def read_csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (first line of the record, row) for each CSV record; check columns and field counts."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(path, "file does not exist") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataFormatError(path, "empty file (no header row)", line=1) from None
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(path, f"missing column(s) {', '.join(missing)}; header is {header}", line=1)
        end = reader.line_num
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record:
                continue
            if len(record) != len(header):
                raise DataFormatError(path, f"expected {len(header)} fields, found {len(record)}", line=start)
            row = dict(zip(header, record, strict=True))
            empty = [c for c in required if not row[c].strip()]
            if empty:
                raise DataFormatError(path, f"empty value in column(s) {', '.join(empty)}", line=start)
            yield start, row


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON Lines file."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataFormatError(path, "file does not exist") from None
    with handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, f"not valid JSON: {e.msg}", line=n) from None
            if not isinstance(obj, dict):
                raise DataFormatError(path, "expected a JSON object", line=n)
            yield n, obj


def field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, line: int) -> Any:
    """``obj[key]`` checked for presence and type."""
    if key not in obj:
        raise DataFormatError(path, f"missing field {key!r}", line=line)
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataFormatError(path, f"field {key!r}: expected {names}, got {type(value).__name__}", line=line)
    return value
