"""Dataset loaders in the official formats, all producing :class:`QADataset`.

============================  ==========================================================
format                        file(s)
============================  ==========================================================
``squad``                     SQuAD v1.1 JSON
``streamingqa-jsonl``         StreamingQA JSONL + a documents JSONL (``--documents``)
``streamingqa-csv``           CSV with ``text``, ``question``, ``answers`` (MAC/MBC form)
``archivalqa``                official ArchivalQA CSV + a paragraphs file (``--documents``)
``archivalqa-processed``      CSV with ``ans_paragraph``, ``doc_id``, ``para_num``
============================  ==========================================================

``auto`` picks the format from the extension and the CSV header.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from learner.data.archivalqa import (
    OFFICIAL_COLUMNS,
    PROCESSED_COLUMNS,
    load_archivalqa_official,
    load_archivalqa_processed,
)
from learner.data.squad import load_squad
from learner.data.streamingqa import load_streamingqa_csv, load_streamingqa_jsonl
from learner.data.types import QADataset, QADocument, QAExample
from learner.errors import DataFormatError

Format = Literal[
    "auto", "squad", "streamingqa-jsonl", "streamingqa-csv", "archivalqa", "archivalqa-processed"
]
FORMATS: tuple[str, ...] = (
    "auto",
    "squad",
    "streamingqa-jsonl",
    "streamingqa-csv",
    "archivalqa",
    "archivalqa-processed",
)

__all__ = ["FORMATS", "Format", "QADataset", "QADocument", "QAExample", "detect_format", "load_dataset"]


def detect_format(path: Path) -> str:
    """Guess the format of ``path`` from its extension and, for CSV, its header."""
    if path.suffix == ".json":
        return "squad"
    if path.suffix == ".jsonl":
        return "streamingqa-jsonl"
    if path.suffix != ".csv":
        raise DataFormatError(path, "cannot tell the format from the extension; pass --format")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            header = {h.strip() for h in next(csv.reader(f), [])}
    except FileNotFoundError:
        raise DataFormatError(path, "file does not exist") from None
    if set(PROCESSED_COLUMNS) <= header:
        return "archivalqa-processed"
    if set(OFFICIAL_COLUMNS) <= header:
        return "archivalqa"
    if {"text", "question", "answers"} <= header:
        return "streamingqa-csv"
    raise DataFormatError(path, f"unrecognised CSV header {sorted(header)}; pass --format", line=1)


def load_dataset(path: Path, fmt: str = "auto", documents: Path | None = None) -> QADataset:
    """Load ``path`` in format ``fmt``; ``documents`` is the evidence/paragraph file where one is needed."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file does not exist")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("streamingqa-jsonl", "archivalqa") and documents is None:
        raise DataFormatError(path, f"format {fmt} needs a documents file (--documents)")
    if fmt == "squad":
        return load_squad(path)
    if fmt == "streamingqa-jsonl":
        assert documents is not None
        return load_streamingqa_jsonl(path, documents)
    if fmt == "streamingqa-csv":
        return load_streamingqa_csv(path)
    if fmt == "archivalqa":
        assert documents is not None
        return load_archivalqa_official(path, documents)
    if fmt == "archivalqa-processed":
        return load_archivalqa_processed(path)
    raise DataFormatError(path, f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
