"""Plain texts for self-supervised amortizer pretraining (`mbc pretrain-amortizer`); the formats
are in :mod:`corpora.formats`. No questions or answers are read: the texts are only documents to
autoencode and continue."""

from __future__ import annotations

from pathlib import Path

from corpora.errors import DatasetError
from corpora.files import field, read_jsonl
from corpora.formats import TEXT_FORMATS
from corpora.squad import load_squad


def _reuters(path: Path) -> list[str]:
    texts = []
    for line, obj in read_jsonl(path):
        body = obj.get("body") or ""
        if not isinstance(body, str):
            raise DatasetError(path, f"field 'body': expected str, got {type(body).__name__}", line=line)
        title = obj.get("title") or ""
        if body.strip():
            texts.append(
                f"{title.strip()}\n{body.strip()}" if isinstance(title, str) and title else body.strip()
            )
    return texts


def _jsonl(path: Path) -> list[str]:
    return [t for line, obj in read_jsonl(path) if (t := field(obj, "text", str, path, line)).strip()]


def load_texts(path: Path, fmt: str) -> list[str]:
    """Every text of ``path`` in format ``fmt``; one-line errors for an unknown format, a missing
    file, or a file without a single non-empty text."""
    path = Path(path)
    if fmt not in TEXT_FORMATS:
        raise DatasetError(None, f"unknown text format {fmt!r}; known: {', '.join(TEXT_FORMATS)}")
    if not path.is_file():
        raise DatasetError(path, "file does not exist")
    if fmt == "reuters":
        texts = _reuters(path)
    elif fmt == "jsonl":
        texts = _jsonl(path)
    else:
        texts = list(dict.fromkeys(d.text for d in load_squad(path).documents.values() if d.text.strip()))
    if not texts:
        raise DatasetError(path, f"no non-empty text in this {fmt} file")
    return texts
