"""The common question-answering example type every dataset loader produces."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class QADocument:
    """A text the model reads into memory (a news article, a paragraph)."""

    doc_id: str
    text: str
    timestamp: int | None = None  # UTC seconds, when the source has one


@dataclass(frozen=True)
class QAExample:
    """One question about one document, with every reference answer."""

    qa_id: str
    doc_id: str
    question: str
    answers: tuple[str, ...]
    group: str | None = None  # rows of one group stay together under group shuffling (article, bank)

    @property
    def target(self) -> str:
        """The training target: the shortest reference answer (as the papers do)."""
        return min(self.answers, key=len)


@dataclass
class QADataset:
    """Documents by id (in first-seen order) and the questions about them."""

    name: str
    documents: dict[str, QADocument] = field(default_factory=dict)
    examples: list[QAExample] = field(default_factory=list)

    def doc_order(self) -> list[str]:
        """QADocument ids in the order their first question appears."""
        seen: dict[str, None] = {}
        for ex in self.examples:
            seen.setdefault(ex.doc_id, None)
        return list(seen)

    def first_docs(self, n: int | None) -> QADataset:
        """The first ``n`` documents (by first question) and all their questions; all when ``n`` is None."""
        keep = self.doc_order()
        if n is not None:
            keep = keep[:n]
        wanted = set(keep)
        return QADataset(
            self.name,
            {d: self.documents[d] for d in keep},
            [ex for ex in self.examples if ex.doc_id in wanted],
        )

    def rows(self) -> Iterator[tuple[str, str, str]]:
        """(document text, question, target answer) per example."""
        for ex in self.examples:
            yield self.documents[ex.doc_id].text, ex.question, ex.target
