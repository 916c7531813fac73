"""The synthetic stream: disjoint people across splits, distinct first names per bank, answers that
the question cannot reveal, and files the loaders read back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from corpora.qa import load_dataset
from learner.data.synth.generator import DISTRACTORS, SynthConfig, generate, write_all

SMALL = SynthConfig(pretrain_docs=64, train_docs=256, val_docs=64, test_docs=64, train_people=128, seed=3)


def test_splits_use_disjoint_people_and_distinct_first_names_per_bank() -> None:
    splits = generate(SMALL)
    people = {s: {r.person for r in rows} for s, rows in splits.items()}
    names = list(people)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not people[a] & people[b], (a, b)
    for split, rows in splits.items():
        if split != "train":
            assert len({r.person for r in rows}) == len(rows)  # held-out people appear once
        banks: dict[str, list[str]] = {}
        for r in rows:
            banks.setdefault(r.group, []).append(r.person.split()[0])
        for firsts in banks.values():
            assert len(firsts) == len(set(firsts)) <= SMALL.bank_size


def test_train_people_recur_with_facts_drawn_afresh() -> None:
    train = generate(SMALL)["train"]
    assert 100 < len({r.person for r in train}) <= 128  # drawn with replacement from 128 people
    answers: dict[str, set[str]] = {}
    for r in train:
        answers.setdefault(r.person, set()).add(r.answer)
    # the same person (hence the same question text) has different answers in different banks
    assert sum(len(a) > 1 for a in answers.values()) > 64


def test_answers_are_not_derivable_from_questions() -> None:
    rows = [r for split in generate(SMALL).values() for r in split]
    for r in rows:
        assert r.answer not in r.question
        assert r.answer in r.text and r.person in r.text
        fact = [s for s in r.text.split(". ") if r.person in s]
        assert len(fact) == 1  # distractors never mention anyone
    # the same question template is asked of people with many different answers
    by_template = Counter((r.relation, r.answer) for r in rows)
    assert len({a for (rel, a) in by_template if rel == "job"}) == SMALL.values


def test_documents_mix_fact_and_distractors() -> None:
    for r in generate(SMALL)["train"][:50]:
        distractors = [d for d in DISTRACTORS if d in r.text]
        assert SMALL.min_distractors <= len(distractors) <= SMALL.max_distractors


def test_generation_is_deterministic() -> None:
    assert generate(SMALL) == generate(SMALL)
    assert generate(SMALL)["test"] != generate(SynthConfig(**{**SMALL.__dict__, "seed": 4}))["test"]


def test_written_files_load_in_both_streamingqa_forms(tmp_path: Path) -> None:
    counts = write_all(SMALL, tmp_path)
    assert counts == {"pretrain": 64, "train": 256, "val": 64, "test": 64}
    csv_ds = load_dataset(tmp_path / "test.csv")
    jsonl_ds = load_dataset(tmp_path / "test.jsonl", documents=tmp_path / "test_docs.jsonl")
    assert [e.question for e in csv_ds.examples] == [e.question for e in jsonl_ds.examples]
    assert [e.answers for e in csv_ds.examples] == [e.answers for e in jsonl_ds.examples]
    assert [csv_ds.documents[e.doc_id].text for e in csv_ds.examples] == [
        jsonl_ds.documents[e.doc_id].text for e in jsonl_ds.examples
    ]
    assert csv_ds.examples[0].group == "test-bank0"
    assert (tmp_path / "manifest.json").is_file()
