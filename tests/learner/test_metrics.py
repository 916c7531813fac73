"""SQuAD answer normalisation, exact match and F1."""

from __future__ import annotations

import pytest

from learner.eval.squad_metrics import best_over, exact_match, f1, normalize_answer


def test_normalisation() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("  ") == ""


def test_exact_match_and_f1_values() -> None:
    assert exact_match("the Broncos", "Broncos") == 1.0
    assert exact_match("Broncos.", "Denver Broncos") == 0.0
    assert f1("Denver Broncos", "Broncos") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert f1("red blue", "blue green") == pytest.approx(0.5)
    assert f1("", "") == 1.0 and f1("x", "") == 0.0


def test_best_over_references() -> None:
    refs = ["March", "in March"]
    assert best_over("em", "in march", refs) == 1.0
    assert best_over("f1", "early March", refs) == pytest.approx(2 / 3)
