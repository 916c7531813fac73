"""A synthetic knowledge stream (`mbc synth`): facts about fictional people among distractor sentences.

Each document states one fact — a job, a home city or a pet — about one person, surrounded by
sentences that mention nobody. Each question asks for that fact. The value is drawn uniformly at
random for every person, so it can never be derived from the question: only the document (the
memory) knows it.

Splits ``pretrain`` (corpus for a from-scratch base LM and encoder warm-up; shorter documents),
``train``, ``val`` and ``test`` use disjoint people (full names). In the train split people recur
(``train_people`` of them) and every document draws its fact afresh, so the same question has
different answers in different banks: memorising people cannot lower the training loss, only
reading the memory can. Validation and test people appear once. Documents come in banks of ``bank_size`` with distinct first names
inside each bank (the ``group`` column), so within a bank — a training batch under group
shuffling, or the first ``bank_size`` test documents — the first name identifies the document.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from learner.data.synth.pools import DISTRACTORS, FIRST_NAMES, RELATIONS, SURNAMES, Relation
from learner.errors import ConfigValueError

SPLITS = ("pretrain", "train", "val", "test")


@dataclass(frozen=True)
class SynthConfig:
    pretrain_docs: int = 512
    train_docs: int = 1536
    val_docs: int = 64
    test_docs: int = 64
    bank_size: int = 32
    relations: int = 3  # how many of job / city / pet
    values: int = 16  # values per relation
    first_names: int = 40
    min_distractors: int = 1
    max_distractors: int = 2
    pretrain_max_distractors: int = 2  # the base LM's corpus (kept short: it must learn to read it quickly)
    train_people: int | None = 640  # distinct people of the train split; they recur with new facts
    seed: int = 0

    def validate(self) -> SynthConfig:
        if not 1 <= self.relations <= len(RELATIONS):
            raise ConfigValueError(f"relations must be in [1, {len(RELATIONS)}]")
        if not 2 <= self.values <= 16:
            raise ConfigValueError("values must be in [2, 16]")
        if not self.bank_size <= self.first_names <= len(FIRST_NAMES):
            raise ConfigValueError(f"need bank_size <= first_names <= {len(FIRST_NAMES)}")
        if not 0 <= self.min_distractors <= self.max_distractors <= len(DISTRACTORS):
            raise ConfigValueError("need 0 <= min_distractors <= max_distractors")
        train = self.train_docs if self.train_people is None else min(self.train_docs, self.train_people)
        total = self.pretrain_docs + train + self.val_docs + self.test_docs
        if total > self.first_names * len(SURNAMES):
            raise ConfigValueError(
                f"{total} documents need more than the {self.first_names * len(SURNAMES)} people"
            )
        return self


@dataclass(frozen=True)
class SynthRow:
    qa_id: str
    doc_id: str
    group: str
    text: str
    question: str
    answer: str
    relation: str
    person: str


class _People:
    """Hands out people no split has used yet, by first name."""

    def __init__(self, firsts: Sequence[str], rng: random.Random) -> None:
        self.surnames = {f: rng.sample(SURNAMES, len(SURNAMES)) for f in firsts}

    def take(self, first: str) -> str:
        if not self.surnames[first]:
            raise ConfigValueError(f"ran out of surnames for {first}")
        return f"{first} {self.surnames[first].pop()}"

    def available(self) -> list[str]:
        return [f for f, s in self.surnames.items() if s]


def _document(person: str, rel: Relation, value: str, most: int, cfg: SynthConfig, rng: random.Random) -> str:
    sentences = rng.sample(DISTRACTORS, rng.randint(min(cfg.min_distractors, most), most))
    fact = rng.choice(rel.facts).format(name=person, value=value)
    sentences.insert(rng.randint(0, len(sentences)), fact)
    return " ".join(sentences)


def _split_people(
    people: _People, total: int, firsts: Sequence[str], rng: random.Random
) -> dict[str, list[str]]:
    """``total`` new people, spread evenly over the first names."""
    pool: dict[str, list[str]] = {f: [] for f in firsts}
    order = list(firsts)
    for i in range(total):
        if i % len(order) == 0:
            rng.shuffle(order)
        pool[order[i % len(order)]].append(people.take(order[i % len(order)]))
    return pool


def generate(cfg: SynthConfig) -> dict[str, list[SynthRow]]:
    """All four splits, deterministic in ``cfg.seed``."""
    cfg.validate()
    rng = random.Random(cfg.seed)
    firsts = FIRST_NAMES[: cfg.first_names]
    people = _People(firsts, rng)
    relations = RELATIONS[: cfg.relations]
    sizes = dict(zip(SPLITS, (cfg.pretrain_docs, cfg.train_docs, cfg.val_docs, cfg.test_docs), strict=True))
    out: dict[str, list[SynthRow]] = {}
    for split, n in sizes.items():
        most = cfg.pretrain_max_distractors if split == "pretrain" else cfg.max_distractors
        reuse = split == "train" and cfg.train_people is not None and cfg.train_people < n
        pool = _split_people(people, cfg.train_people or n, firsts, rng) if reuse else {}
        rows: list[SynthRow] = []
        while len(rows) < n:
            bank = len(rows) // cfg.bank_size
            free = [f for f in firsts if pool[f]] if reuse else people.available()
            want = min(cfg.bank_size, n - len(rows))
            if len(free) < want:
                raise ConfigValueError(
                    "not enough distinct first names left for a bank; ask for fewer documents"
                )
            for first in rng.sample(free, want):
                person = rng.choice(pool[first]) if reuse else people.take(first)
                rel = rng.choice(relations)
                value = rng.choice(rel.values[: cfg.values])  # drawn afresh for every document
                i = len(rows)
                rows.append(
                    SynthRow(
                        qa_id=f"{split}-{i}",
                        doc_id=f"{split}-d{i}",
                        group=f"{split}-bank{bank}",
                        text=_document(person, rel, value, most, cfg, rng),
                        question=rng.choice(rel.questions).format(name=person),
                        answer=value,
                        relation=rel.name,
                        person=person,
                    )
                )
        out[split] = rows
    return out


BASE_TS = 1_700_000_000  # evidence timestamps start here, one hour apart


def write_csv(rows: Sequence[SynthRow], path: Path) -> None:
    """StreamingQA CSV form (text, question, answers) plus doc_id, qa_id and group."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "question", "answers", "doc_id", "qa_id", "group"])
        for r in rows:
            w.writerow([r.text, r.question, r.answer, r.doc_id, r.qa_id, r.group])


def write_jsonl(rows: Sequence[SynthRow], path: Path, docs_path: Path) -> None:
    """Official StreamingQA JSONL questions plus a documents JSONL joined on evidence_id."""
    with path.open("w", encoding="utf-8") as qf, docs_path.open("w", encoding="utf-8") as df:
        for i, r in enumerate(rows):
            ts = BASE_TS + 3600 * i
            df.write(json.dumps({"sorting_key": r.doc_id, "publication_ts": ts, "text": r.text}) + "\n")
            qa = {
                "qa_id": r.qa_id,
                "question": r.question,
                "answers": [r.answer],
                "answers_additional": "",
                "question_ts": ts + 86400,
                "evidence_ts": ts,
                "evidence_id": r.doc_id,
                "recent_or_past": "recent",
                "written_or_generated": "generated",
            }
            qf.write(json.dumps(qa) + "\n")


def write_all(cfg: SynthConfig, out_dir: Path) -> dict[str, int]:
    """Generate and write every split to ``out_dir``; returns the number of rows per split."""
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = generate(cfg)
    for split, rows in splits.items():
        write_csv(rows, out_dir / f"{split}.csv")
        write_jsonl(rows, out_dir / f"{split}.jsonl", out_dir / f"{split}_docs.jsonl")
    counts = {split: len(rows) for split, rows in splits.items()}
    manifest = {"config": asdict(cfg), "rows": counts, "format": "streamingqa-csv + streamingqa-jsonl"}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return counts
