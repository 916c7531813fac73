"""SQuAD v1.1 in its official JSON form: data[].paragraphs[].{context, qas[].{id, question, answers[]}}.

Two readings of one file: :func:`load_squad` (training and evaluation) checks every field and keeps
the questions, each paragraph one document (id ``<title>#<paragraph index>``), the article title
the group; :func:`squad_paragraphs` (the replay producer) takes only the paragraphs, leniently
(a file without questions, as in a test split, still replays).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from corpora.errors import DatasetError
from corpora.files import opened
from corpora.types import QADataset, QADocument, QAExample


def _need(obj: Any, key: str, kind: type, path: Path, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DatasetError(path, f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise DatasetError(path, f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def load_squad(path: Path) -> QADataset:
    """Load a SQuAD v1.1 JSON file."""
    try:
        with opened(path) as handle:
            raw = json.load(handle)
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
    ds = QADataset(path.name)
    for a, article in enumerate(_need(raw, "data", list, path, "top level")):
        title = _need(article, "title", str, path, f"data[{a}]")
        for p, para in enumerate(_need(article, "paragraphs", list, path, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            context = _need(para, "context", str, path, where)
            doc_id = f"{title}#{p}"
            ds.documents[doc_id] = QADocument(doc_id, context)
            for q, qa in enumerate(_need(para, "qas", list, path, where)):
                qwhere = f"{where}.qas[{q}]"
                answers = _need(qa, "answers", list, path, qwhere)
                texts = tuple(
                    _need(ans, "text", str, path, f"{qwhere}.answers[{i}]") for i, ans in enumerate(answers)
                )
                if not texts:
                    raise DatasetError(path, f"{qwhere}: no answers")
                ds.examples.append(
                    QAExample(
                        qa_id=_need(qa, "id", str, path, qwhere),
                        doc_id=doc_id,
                        question=_need(qa, "question", str, path, qwhere).strip(),
                        answers=texts,
                        group=title,
                    )
                )
    return ds


@dataclass(frozen=True, slots=True)
class Paragraph:
    """One SQuAD paragraph as a document: its article's title and its index in the article."""

    article: str
    index: int
    context: str


def squad_paragraphs(handle: IO[str], path: Path) -> Iterator[Paragraph]:
    """Every paragraph of an open SQuAD file, in file order; missing titles and contexts are empty."""
    try:
        data = json.load(handle)["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DatasetError(path, f"not SQuAD JSON ({type(e).__name__}: {e})") from None
    for article in data:
        title = str(article.get("title", ""))
        for i, paragraph in enumerate(article.get("paragraphs", [])):
            yield Paragraph(title, i, str(paragraph.get("context", "")))
