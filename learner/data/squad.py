"""SQuAD v1.1 in its official JSON form: data[].paragraphs[].{context, qas[].{id, question, answers[]}}.

Each paragraph is one document (id ``<title>#<paragraph index>``); the article title is the group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from learner.data.types import QADataset, QADocument, QAExample
from learner.errors import DataFormatError


def _need(obj: Any, key: str, kind: type, path: Path, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataFormatError(path, f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise DataFormatError(path, f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def load_squad(path: Path) -> QADataset:
    """Load a SQuAD v1.1 JSON file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(path, "file does not exist") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
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
                    raise DataFormatError(path, f"{qwhere}: no answers")
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
