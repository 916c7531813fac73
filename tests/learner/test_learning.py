"""The learning test: memory must carry knowledge.

The tiny preset is trained from scratch on `mbc synth` data through the `mbc train` command
(base-LM pretraining on the pretrain split, retrieval warm-up, meta-training), once as MBC
(compressed memory) and once as MAC (full memory, reusing the same base LM). Every test bank holds
32 documents about people never seen in training; a question's answer (one of 8 jobs) is drawn at
random per document, so without memory the best possible EM is chance (~1/8). The test fails if
compression or the memory path is broken.

Fixed seeds; CPU. The EM numbers are printed (run with -s) and recorded in learner/NOTES.md.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learner.data.synth.generator import SynthConfig, write_all
from mbc.cli import app

runner = CliRunner()
SYNTH = SynthConfig(
    pretrain_docs=256,
    train_docs=4096,
    val_docs=32,
    test_docs=128,  # four independent banks of 32 held-out people
    relations=1,
    values=8,
    min_distractors=1,
    max_distractors=2,
    pretrain_max_distractors=2,
    seed=0,
)
EPOCHS = "8"


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _train(data: Path, run: Path, memory: str, *extra: str) -> None:
    _invoke(
        "train",
        "--preset",
        "tiny",
        "--train",
        str(data / "train.csv"),
        "--val",
        str(data / "val.csv"),
        "--run-dir",
        str(run),
        "--memory",
        memory,
        "--epochs",
        EPOCHS,
        "--eval-every",
        "1000000",
        "--no-progress",
        *extra,
    )


def _banks(data: Path) -> list[Path]:
    """The test split cut into one CSV per 32-document bank."""
    with (data / "test.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    banks: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        banks.setdefault(row["group"], []).append(row)
    paths = []
    for name, members in banks.items():
        assert len(members) == 32
        path = data / f"{name}.csv"
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(members)
        paths.append(path)
    return paths


def _eval(ckpt: Path, bank: Path, out: Path, memory: str, aggregation: str = "counts") -> dict[str, object]:
    text = _invoke(
        "eval",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(bank),
        "--num-docs",
        "32",
        "--memory",
        memory,
        "--aggregation",
        aggregation,
        "--out",
        str(out),
    )
    return json.loads(text[text.index("{") :])  # type: ignore[no-any-return]


def _predictions(summary: dict[str, object]) -> list[str]:
    with open(str(summary["questions_csv"]), newline="") as f:
        return [r["prediction"] for r in csv.DictReader(f)]


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~3 minutes on two idle cores; more when the machine is shared
def test_compressed_memory_answers_held_out_questions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_all(SYNTH, data)
    mbc, mac = tmp_path / "mbc", tmp_path / "mac"
    _train(data, mbc, "compressed", "--lm-corpus", str(data / "pretrain.csv"))
    _train(data, mac, "full", "--base-lm", str(mbc / "base_lm"))
    em: dict[str, list[float]] = {"compressed": [], "full": [], "none": []}
    for bank in _banks(data):
        out = tmp_path / "eval" / bank.stem
        counts = _eval(mbc / "checkpoints" / "last", bank, out, "compressed", "counts")
        naive = _eval(mbc / "checkpoints" / "last", bank, out, "compressed", "naive")
        assert _predictions(counts) == _predictions(naive)  # the count-collapsed path is exact
        em["compressed"].append(float(counts["em"]))  # type: ignore[arg-type]
        em["full"].append(float(_eval(mac / "checkpoints" / "last", bank, out, "full")["em"]))  # type: ignore[arg-type]
        em["none"].append(float(_eval(mbc / "checkpoints" / "last", bank, out, "none")["em"]))  # type: ignore[arg-type]
        assert counts["bytes_per_doc"] == 3.0  # K = 2 codes of 9 bits
    mean = {k: statistics.mean(v) for k, v in em.items()}
    print(f"\nlearning test EM (4 banks of 32 held-out documents): {json.dumps(em)} mean {json.dumps(mean)}")
    assert mean["compressed"] >= mean["none"] + 0.25
    assert mean["compressed"] >= 0.8 * mean["full"]
