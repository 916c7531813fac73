"""StreamingQA: its questions (training and evaluation) and its news documents (replay).

Questions, in two forms:

* Official JSONL (deepmind/streamingqa): one question per line with ``qa_id``, ``question``,
  ``answers`` (list), ``answers_additional``, ``question_ts``, ``evidence_ts``, ``evidence_id``,
  ``recent_or_past``, ``written_or_generated``; the evidence documents come from a separate JSONL
  file of WMT documents (``sorting_key``, ``publication_ts``, ``text``), joined on
  ``evidence_id`` = ``sorting_key``.
* The CSV the MAC/MBC code uses: ``text``, ``question``, ``answers`` (several answers separated by
  backslashes); optional ``doc_id``, ``qa_id`` and ``group`` columns (written by `mbc synth`).

Documents, for the replay producer (:func:`wmt_documents`, :func:`evidence_documents`): the WMT
news-docs lines the StreamingQA extraction script reads (``YYYYMMDD<TAB>base64 sentence-split
text<TAB>base64 text``; the id is the sorting key the script assigns), or question rows (JSONL or
CSV) carrying their evidence document (``evidence_id``, ``evidence_ts`` in UTC seconds, text in
``text|evidence|context|evidence_text``), each evidence document once.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from corpora.errors import DatasetError
from corpora.files import field, first, jsonl_rows, loose_csv_rows, parse_date, read_csv, read_jsonl
from corpora.types import QADataset, QADocument, QAExample

QA_FIELDS = (
    "qa_id",
    "question",
    "answers",
    "answers_additional",
    "question_ts",
    "evidence_ts",
    "evidence_id",
    "recent_or_past",
    "written_or_generated",
)
ANSWER_SEPARATOR = "\\"


def text_doc_id(text: str) -> str:
    """A stable id for a document that has none: the first 16 hex digits of SHA-256 of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_documents_jsonl(path: Path) -> dict[str, QADocument]:
    """WMT-style documents: ``sorting_key`` (or ``id``), ``text``, optional ``publication_ts``."""
    docs: dict[str, QADocument] = {}
    for line, obj in read_jsonl(path):
        key = "sorting_key" if "sorting_key" in obj else "id"
        doc_id = str(field(obj, key, (str, int), path, line))
        ts = obj.get("publication_ts")
        if ts is not None and not isinstance(ts, int):
            raise DatasetError(path, "field 'publication_ts': expected int", line=line)
        docs[doc_id] = QADocument(doc_id, field(obj, "text", str, path, line), ts)
    return docs


def load_streamingqa_jsonl(path: Path, documents: Path) -> QADataset:
    """Official StreamingQA questions joined with their evidence documents."""
    docs = load_documents_jsonl(documents)
    ds = QADataset(path.name)
    for line, obj in read_jsonl(path):
        for key in QA_FIELDS:
            if key not in obj:
                raise DatasetError(path, f"missing field {key!r}", line=line)
        answers = field(obj, "answers", list, path, line)
        if not answers or not all(isinstance(a, str) for a in answers):
            raise DatasetError(path, "field 'answers': expected a non-empty list of strings", line=line)
        for key in ("question_ts", "evidence_ts"):
            field(obj, key, int, path, line)
        evidence = str(field(obj, "evidence_id", (str, int), path, line))
        if evidence not in docs:
            raise DatasetError(path, f"evidence_id {evidence!r} not found in {documents}", line=line)
        ds.documents.setdefault(evidence, docs[evidence])
        ds.examples.append(
            QAExample(
                qa_id=str(field(obj, "qa_id", (str, int), path, line)),
                doc_id=evidence,
                question=field(obj, "question", str, path, line).strip(),
                answers=tuple(answers),
            )
        )
    return ds


def load_streamingqa_csv(path: Path) -> QADataset:
    """The MAC/MBC CSV form (``text``, ``question``, ``answers``)."""
    ds = QADataset(path.name)
    for line, row in read_csv(path, ("text", "question", "answers")):
        text = row["text"]
        doc_id = row.get("doc_id") or text_doc_id(text)
        answers = tuple(a.strip() for a in row["answers"].split(ANSWER_SEPARATOR) if a.strip())
        if not answers:
            raise DatasetError(path, "no answer in column 'answers'", line=line)
        ds.documents.setdefault(doc_id, QADocument(doc_id, text))
        ds.examples.append(
            QAExample(
                qa_id=row.get("qa_id") or f"{path.stem}-{len(ds.examples)}",
                doc_id=doc_id,
                question=row["question"].strip(),
                answers=answers,
                group=row.get("group") or None,
            )
        )
    return ds


@dataclass(frozen=True, slots=True)
class NewsDocument:
    """One StreamingQA news document: its id, text and publication time (None when undated)."""

    ref: str
    text: str
    published_at: datetime | None


def is_wmt_line(line: str) -> bool:
    """Whether ``line`` looks like a WMT news-docs line (``YYYYMMDD<TAB>…<TAB>…``)."""
    parts = line.rstrip("\r\n").split("\t")
    return len(parts) == 3 and len(parts[0]) == 8 and parts[0].isdigit()


def wmt_documents(handle: IO[str], path: Path) -> Iterator[NewsDocument]:
    """The documents of an open WMT news-docs file, in file order."""
    for n, line in enumerate(handle, 1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        if len(parts) != 3:
            raise DatasetError(path, "expected DATE<TAB>split text<TAB>text", line=n)
        day, split_text, unsplit = parts
        try:
            published = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
            text = base64.b64decode(split_text, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as e:
            raise DatasetError(path, str(e), line=n) from None
        digest = hashlib.sha256(unsplit.encode()).hexdigest()
        sorting_key = "\x00\x01".join([published.strftime("%Y%m%d%H%M%S%f"), digest, ""])
        yield NewsDocument(sorting_key, text, published)


def evidence_documents(handle: IO[str], path: Path) -> Iterator[NewsDocument]:
    """The evidence documents of open StreamingQA question rows (CSV when the name says so, else
    JSONL), each once, in order of first mention."""
    rows: Iterator[tuple[int, Mapping[str, Any]]]
    rows = loose_csv_rows(handle, path) if ".csv" in path.name.lower() else jsonl_rows(handle, path)
    seen: set[str] = set()
    for n, row in rows:
        text = first(row, ("text", "evidence", "context", "evidence_text"))
        if text is None:
            raise DatasetError(path, "no evidence text column (text|evidence|context)", line=n)
        ref = str(row.get("evidence_id") or hashlib.sha256(str(text).encode()).hexdigest())
        if ref in seen:
            continue
        seen.add(ref)
        yield NewsDocument(ref, str(text), parse_date(row.get("evidence_ts"), path, n))
