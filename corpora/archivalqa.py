"""ArchivalQA (Wang et al. 2022), in its two CSV forms.

* Official: ``id``, ``question``, ``answer``, ``para_id`` (``<article>_<paragraph>``), plus
  ``org_answer``, ``answer_start``, ``trans_que``, ``trans_ans``, ``source``. The NYT paragraph
  texts are not in it; they come from a paragraphs file (CSV or JSONL with ``para_id`` and
  ``text``).
* Processed (the CaMeLS / MAC / MBC form): ``question``, ``answer``, ``ans_paragraph``, ``doc_id``,
  ``para_num`` (optionally ``id`` and the full article ``ans_text``).

Documents are paragraphs; the article is the group.
"""

from __future__ import annotations

from pathlib import Path

from corpora.errors import DatasetError
from corpora.files import field, read_csv, read_jsonl
from corpora.types import QADataset, QADocument, QAExample

OFFICIAL_COLUMNS = ("id", "question", "answer", "para_id")
PROCESSED_COLUMNS = ("question", "answer", "ans_paragraph", "doc_id", "para_num")


def load_paragraphs(path: Path) -> dict[str, str]:
    """para_id -> paragraph text, from CSV (``para_id``, ``text``) or JSONL."""
    if path.suffix == ".jsonl":
        return {
            str(field(obj, "para_id", (str, int), path, n)): field(obj, "text", str, path, n)
            for n, obj in read_jsonl(path)
        }
    return {row["para_id"]: row["text"] for _, row in read_csv(path, ("para_id", "text"))}


def load_archivalqa_official(path: Path, paragraphs: Path) -> QADataset:
    texts = load_paragraphs(paragraphs)
    ds = QADataset(path.name)
    for line, row in read_csv(path, OFFICIAL_COLUMNS):
        para = row["para_id"]
        if para not in texts:
            raise DatasetError(path, f"para_id {para!r} not found in {paragraphs}", line=line)
        ds.documents.setdefault(para, QADocument(para, texts[para]))
        ds.examples.append(
            QAExample(
                row["id"], para, row["question"].strip(), (row["answer"].strip(),), para.rsplit("_", 1)[0]
            )
        )
    return ds


def load_archivalqa_processed(path: Path) -> QADataset:
    ds = QADataset(path.name)
    for line, row in read_csv(path, PROCESSED_COLUMNS):
        if not row["para_num"].strip().lstrip("-").isdigit():
            raise DatasetError(path, f"para_num {row['para_num']!r} is not an integer", line=line)
        doc_id = f"{row['doc_id']}_{int(row['para_num'])}"
        ds.documents.setdefault(doc_id, QADocument(doc_id, row["ans_paragraph"]))
        qa_id = row.get("id") or f"{path.stem}-{len(ds.examples)}"
        ds.examples.append(
            QAExample(qa_id, doc_id, row["question"].strip(), (row["answer"].strip(),), row["doc_id"])
        )
    return ds
