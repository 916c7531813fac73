"""`mbc topics tail`: messages as a person reads them.

A document (clean or raw) shows its title, dates, source and the start of its text; a
dead-letter message its reason, detail and the start of the original bytes; any other JSON a
summary of its fields; anything else its size and first bytes.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from typing import Any

from pipeline.topic_reader import Record

PREVIEW = 160


def _time(ms: int) -> str:
    if ms <= 0:
        return "no timestamp"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(text: str, n: int = PREVIEW) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _bytes_preview(data: bytes, n: int = 80) -> str:
    shown = data[:n].decode("utf-8", "backslashreplace")
    return repr(shown) + ("…" if len(data) > n else "")


def _key(key: bytes | None) -> str:
    if key is None:
        return "(no key)"
    try:
        return _short(key.decode("utf-8"), 48)
    except UnicodeDecodeError:
        return _bytes_preview(key, 24)


def format_record(rec: Record) -> str:
    """A few lines describing ``rec``."""
    size = len(rec.value or b"")
    head = f"── {rec.topic} p{rec.partition} @{rec.offset}  {_time(rec.timestamp_ms)}  key {_key(rec.key)}  {size:,} B"
    return "\n".join([head, *(f"   {line}" for line in _body(rec))])


def _body(rec: Record) -> list[str]:
    if rec.header("mbc-reason") is not None:
        return _dlq(rec)
    value = rec.value
    if value is None:
        return ["(empty value: tombstone)"]
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return [f"not JSON: {_bytes_preview(value)}"]
    if isinstance(obj, dict) and "text" in obj and "title" in obj:
        return _document(obj)
    return [f"JSON: {_json_summary(obj)}"]


def _document(doc: dict[str, Any]) -> list[str]:
    text = str(doc.get("text") or "")
    title = str(doc.get("title") or "(no title)")
    lines = [_short(title, 120)]
    dates = f"published {doc.get('published_at') or 'unknown'} · fetched {doc.get('fetched_at')}"
    lines.append(f"{dates} · source {_short(str(doc.get('source')), 60)}")
    if doc.get("url"):
        lines.append(f"url {_short(str(doc['url']), 100)}")
    lines.extend(textwrap.wrap(f'"{_short(text)}" ({len(text):,} characters)', 100))
    lines.append(
        f"id {doc.get('id')} · sha256 {str(doc.get('content_sha256'))[:12]}… · v{doc.get('schema_version')}"
    )
    return lines


def _dlq(rec: Record) -> list[str]:
    lines = [f"REJECTED: {rec.header('mbc-reason')} — {_short(rec.header('mbc-detail') or '', 140)}"]
    origin = f"from {rec.header('mbc-source-topic')} p{rec.header('mbc-source-partition')} @{rec.header('mbc-source-offset')}"
    size = int(rec.header("mbc-original-size") or 0)
    truncated = " (truncated here)" if rec.header("mbc-truncated") == "1" else ""
    lines.append(f"{origin} · original {size:,} B{truncated}")
    lines.append(f"original: {_bytes_preview(rec.value or b'')}")
    return lines


def _json_summary(obj: Any) -> str:
    if isinstance(obj, dict):
        parts = [f"{k}={_short(json.dumps(v, ensure_ascii=False), 40)}" for k, v in list(obj.items())[:8]]
        more = f", … {len(obj) - 8} more" if len(obj) > 8 else ""
        return "{" + ", ".join(parts) + more + "}"
    return _short(json.dumps(obj, ensure_ascii=False), 200)
