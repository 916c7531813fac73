"""Every dataset format, by what it is read into, and how a format is told from the file.

Documents for the replay producer (``mbc produce replay --format``; :mod:`corpora.documents`):

===============  =====================================================================================
``jsonl``        news documents, one JSON object per line; columns recognised by name (below)
``csv``          the same as a CSV file with a header row
``squad``        SQuAD JSON: every paragraph (``context``) one document, titled with its article
``streamingqa``  WMT news-docs lines, or StreamingQA question rows with their evidence documents
===============  =====================================================================================

Question-answering datasets for training and evaluation (``mbc train|eval --format``;
:mod:`corpora.qa`):

============================  ==========================================================
``squad``                     SQuAD v1.1 JSON
``streamingqa-jsonl``         StreamingQA JSONL + a documents JSONL (``--documents``)
``streamingqa-csv``           CSV with ``text``, ``question``, ``answers`` (MAC/MBC form)
``archivalqa``                official ArchivalQA CSV + a paragraphs file (``--documents``)
``archivalqa-processed``      CSV with ``ans_paragraph``, ``doc_id``, ``para_num``
============================  ==========================================================

Plain texts for amortizer pretraining (``mbc pretrain-amortizer --format``; :mod:`corpora.texts`):

===========  =====================================================================
``reuters``  a Reuters-21578 JSONL story: ``title``, a newline, ``body`` (stories
             without a body are skipped)
``jsonl``    any JSON Lines file: the ``text`` field of every object
``squad``    SQuAD v1.1 JSON: every distinct paragraph (``context``)
===========  =====================================================================

So ``jsonl`` names the file's syntax, and what is read from each line depends on the use: news
documents by column name for a replay, the ``text`` field for pretraining; the question formats
spell the dataset out (``streamingqa-jsonl``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal, get_args

from corpora.archivalqa import OFFICIAL_COLUMNS, PROCESSED_COLUMNS
from corpora.errors import DatasetError

DocumentFormat = Literal["jsonl", "csv", "squad", "streamingqa"]
DOCUMENT_FORMATS: tuple[str, ...] = get_args(DocumentFormat)

QAFormat = Literal[
    "auto", "squad", "streamingqa-jsonl", "streamingqa-csv", "archivalqa", "archivalqa-processed"
]
QA_FORMATS: tuple[str, ...] = get_args(QAFormat)

TextFormat = Literal["reuters", "jsonl", "squad"]
TEXT_FORMATS: tuple[str, ...] = get_args(TextFormat)


def detect_document_format(path: Path) -> str:
    """The document format implied by the file name (``.gz`` ignored); an error if it does not say."""
    name = path.name.lower().removesuffix(".gz")
    if "streamingqa" in name or "streaminqa" in name or name.startswith("news-docs"):
        return "streamingqa"
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"), (".json", "squad")):
        if name.endswith(suffix):
            return fmt
    raise DatasetError(
        None, f"cannot tell the format of {path}; pass --format ({'|'.join(DOCUMENT_FORMATS)})"
    )


def detect_qa_format(path: Path) -> str:
    """The question-answering format of ``path``, from its extension and, for CSV, its header."""
    if path.suffix == ".json":
        return "squad"
    if path.suffix == ".jsonl":
        return "streamingqa-jsonl"
    if path.suffix != ".csv":
        raise DatasetError(path, "cannot tell the format from the extension; pass --format")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            header = {h.strip() for h in next(csv.reader(f), [])}
    except FileNotFoundError:
        raise DatasetError(path, "file does not exist") from None
    if set(PROCESSED_COLUMNS) <= header:
        return "archivalqa-processed"
    if set(OFFICIAL_COLUMNS) <= header:
        return "archivalqa"
    if {"text", "question", "answers"} <= header:
        return "streamingqa-csv"
    raise DatasetError(path, f"unrecognised CSV header {sorted(header)}; pass --format", line=1)
