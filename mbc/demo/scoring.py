"""The bundled questions about the knowledge documents, answered three ways through
:class:`learner.ask.answerer.Answerer` (the ``mbc ask`` path): with the whole memory, with the
knowledge source's slice, and with no memory at all (the base LM alone); scored by exact match."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KNOWLEDGE_SOURCE = "people-registry"  # the source of the knowledge documents in stream.jsonl


def shown(n_questions: int, n_shown: int) -> list[int]:
    """Which questions the report prints: evenly spaced over the bank, not picked by result."""
    n_shown = min(n_shown, n_questions)
    return [i * n_questions // n_shown for i in range(n_shown)] if n_shown else []


def score_questions(checkpoint: Path, questions: Path, store: Any, n_shown: int) -> dict[str, Any]:
    """Every question three ways: the whole memory, the knowledge source's slice, no memory."""
    from learner.ask.answerer import Answerer
    from learner.eval.squad_metrics import exact_match

    qa = [json.loads(line) for line in questions.read_text(encoding="utf-8").splitlines() if line]
    answerer = Answerer(checkpoint, store, device="cpu")
    bare = answerer.answer_without_memory([q["question"] for q in qa])
    rows = []
    docs = {"all": 0, "slice": 0}
    for q, without in zip(qa, bare, strict=True):
        whole = answerer.ask(q["question"])  # the demo's memory holds documents: never refused
        sliced = answerer.ask(q["question"], source=KNOWLEDGE_SOURCE)
        docs = {"all": whole.documents, "slice": sliced.documents}
        rows.append(
            {
                "question": q["question"],
                "answer": q["answer"],
                "with_memory": whole.answer,
                "with_memory_slice": sliced.answer,
                "without_memory": without,
                "correct_with_memory": bool(exact_match(whole.answer or "", q["answer"])),
                "correct_with_memory_slice": bool(exact_match(sliced.answer or "", q["answer"])),
                "correct_without_memory": bool(exact_match(without, q["answer"])),
                "latency_ms": round(whole.latency_ms, 1),
            }
        )
    n = max(1, len(rows))
    return {
        "questions": rows,
        "shown": shown(len(rows), n_shown),
        "memory_documents": docs["all"],
        "slice": {"source": KNOWLEDGE_SOURCE, "documents": docs["slice"]},
        "em": {
            "with_memory": sum(r["correct_with_memory"] for r in rows) / n,
            "with_memory_slice": sum(r["correct_with_memory_slice"] for r in rows) / n,
            "without_memory": sum(r["correct_without_memory"] for r in rows) / n,
        },
    }
