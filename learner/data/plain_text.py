"""Plain texts for self-supervised amortizer pretraining (`mbc pretrain-amortizer`).

============  =====================================================================
format        what becomes one text
============  =====================================================================
``reuters``   a Reuters-21578 JSONL story: ``title``, a newline, ``body`` (stories
              without a body are skipped)
``jsonl``     any JSON Lines file: the ``text`` field of every object
``squad``     SQuAD v1.1 JSON: every distinct paragraph (``context``)
============  =====================================================================

No questions or answers are read: the texts are only documents to autoencode and continue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from learner.data.io import field, read_jsonl
from learner.data.squad import load_squad
from learner.errors import ConfigValueError, DataFormatError

TextFormat = Literal["reuters", "jsonl", "squad"]
TEXT_FORMATS: tuple[str, ...] = ("reuters", "jsonl", "squad")


def _reuters(path: Path) -> list[str]:
    texts = []
    for line, obj in read_jsonl(path):
        body = obj.get("body") or ""
        if not isinstance(body, str):
            raise DataFormatError(path, f"field 'body': expected str, got {type(body).__name__}", line=line)
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
        raise ConfigValueError(f"unknown text format {fmt!r}; known: {', '.join(TEXT_FORMATS)}")
    if not path.is_file():
        raise DataFormatError(path, "file does not exist")
    if fmt == "reuters":
        texts = _reuters(path)
    elif fmt == "jsonl":
        texts = _jsonl(path)
    else:
        texts = list(dict.fromkeys(d.text for d in load_squad(path).documents.values() if d.text.strip()))
    if not texts:
        raise DataFormatError(path, f"no non-empty text in this {fmt} file")
    return texts
