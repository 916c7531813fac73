"""StreamingQA, in its two forms.

* Official JSONL (deepmind/streamingqa): one question per line with ``qa_id``, ``question``,
  ``answers`` (list), ``answers_additional``, ``question_ts``, ``evidence_ts``, ``evidence_id``,
  ``recent_or_past``, ``written_or_generated``; the evidence documents come from a separate JSONL
  file of WMT documents (``sorting_key``, ``publication_ts``, ``text``), joined on
  ``evidence_id`` = ``sorting_key``.
* The CSV the MAC/MBC code uses: ``text``, ``question``, ``answers`` (several answers separated by
  backslashes); optional ``doc_id``, ``qa_id`` and ``group`` columns (written by `mbc synth`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from learner.data.io import field, read_csv, read_jsonl
from learner.data.types import QADataset, QADocument, QAExample
from learner.errors import DataFormatError

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
            raise DataFormatError(path, "field 'publication_ts': expected int", line=line)
        docs[doc_id] = QADocument(doc_id, field(obj, "text", str, path, line), ts)
    return docs


def load_streamingqa_jsonl(path: Path, documents: Path) -> QADataset:
    """Official StreamingQA questions joined with their evidence documents."""
    docs = load_documents_jsonl(documents)
    ds = QADataset(path.name)
    for line, obj in read_jsonl(path):
        for key in QA_FIELDS:
            if key not in obj:
                raise DataFormatError(path, f"missing field {key!r}", line=line)
        answers = field(obj, "answers", list, path, line)
        if not answers or not all(isinstance(a, str) for a in answers):
            raise DataFormatError(path, "field 'answers': expected a non-empty list of strings", line=line)
        for key in ("question_ts", "evidence_ts"):
            field(obj, key, int, path, line)
        evidence = str(field(obj, "evidence_id", (str, int), path, line))
        if evidence not in docs:
            raise DataFormatError(path, f"evidence_id {evidence!r} not found in {documents}", line=line)
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
            raise DataFormatError(path, "no answer in column 'answers'", line=line)
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
