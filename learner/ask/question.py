"""What a question must be before anything is loaded or asked (``mbc ask``, ``POST /ask``, Answerer)."""

from __future__ import annotations


def question_problem(question: str) -> str | None:
    """Why ``question`` cannot be asked, in a few words; None when it can."""
    if not question.strip() or not any(c.isalnum() for c in question):
        return "the question is blank: give a question with words in it"
    return None
