"""`mbc synth`, `mbc train`, `mbc eval` end to end on a small checkpoint, the per-preset parameter
breakdown, and one-line errors for user mistakes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from learner.model.presets import PRESETS
from mbc.cli import app
from memory_store.codec import encode_codebook
from tests.mbc_process import run_mbc

runner = CliRunner()

SUMMARY_FIELDS = {
    "em",
    "f1",
    "num_docs",
    "num_questions",
    "bank_bytes",
    "codebook_bytes",
    "bytes_per_doc",
    "full_memory_bytes_per_doc",
    "adaptation_ms_per_doc",
    "inference_ms_per_query",
    "peak_gpu_memory_bytes",
    "memory",
    "aggregation",
    "preset",
    "device",
}

# Real parameter counts of the pretrained base LMs (tied embeddings counted once).
FROZEN = {
    "distilgpt2": 81_912_576,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "llama2-7b": 6_738_415_616,
    "smollm2-135m": 134_515_008,
}


def _numbers(output: str) -> dict[str, int]:
    return {
        m[0].strip(): int(m[1].replace(",", ""))
        for m in re.findall(r"^\s+([A-Za-z+\- ]+?)\s+([\d,]+)$", output, re.M)
    }


@pytest.mark.parametrize("preset", list(PRESETS))
def test_dry_run_prints_the_trainable_parameter_breakdown(preset: str) -> None:
    result = runner.invoke(app, ["train", "--preset", preset, "--dry-run"])
    assert result.exit_code == 0, result.output
    n = _numbers(result.output)
    cfg = PRESETS[preset].model
    d, r, last = cfg.lm.hidden, cfg.lora_r, cfg.lora_last_n
    # fused [K|V] vs k_proj + v_proj, each A (r, D) and B (kv_dim, r); kv_dim < D with grouped-query attention
    lora = last * 3 * r * d if cfg.lm.arch == "gpt2" else last * 2 * r * (d + cfg.kv_dim)
    assert n["KV-LoRA"] == lora
    if cfg.code_dim is None:  # raw codebook: C codes of size D
        book = cfg.codebook_size * d
    else:  # code space: G·C codes of size d, the map D -> G·d down, per-group maps d -> D (+ bias) up
        g, cd = cfg.codes_per_vector, cfg.code_dim
        book = g * cfg.codebook_size * cd + d * g * cd + g * cd * d + g * d
    assert n["codebook"] == book
    encoders = n.get("encoder LoRA", 0)  # encoder="lm": the encoders' adapters on the base LM
    assert n["trainable total"] == n["amortization + aggregation"] + lora + book + encoders
    if preset in FROZEN:
        assert n["frozen base LM"] == FROZEN[preset]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    r = runner.invoke(
        app,
        [
            "synth",
            str(data),
            "--pretrain-docs",
            "32",
            "--train-docs",
            "96",
            "--val-docs",
            "32",
            "--test-docs",
            "32",
            "--relations",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    run = root / "run"
    r = runner.invoke(
        app,
        [
            "train",
            "--preset",
            "tiny",
            "--train",
            str(data / "train.csv"),
            "--val",
            str(data / "val.csv"),
            "--run-dir",
            str(run),
            "--epochs",
            "1",
            "--retrieval-warmup",
            "20",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "trainable parameters" in r.output and "KV-LoRA" in r.output
    return data, run


def _eval(data: Path, run: Path, out: Path, *extra: str) -> dict[str, object]:
    r = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(run / "checkpoints" / "last"),
            "--data",
            str(data / "test.csv"),
            "--num-docs",
            "32",
            "--out",
            str(out),
            *extra,
        ],
    )
    assert r.exit_code == 0, r.output
    return json.loads(r.output[r.output.index("{") :])  # type: ignore[no-any-return]


def _predictions(path: str) -> list[str]:
    with open(path, newline="") as f:
        return [row["prediction"] for row in csv.DictReader(f)]


@pytest.mark.slow
def test_eval_counts_and_naive_give_identical_predictions(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    counts = _eval(data, run, tmp_path, "--aggregation", "counts")
    naive = _eval(data, run, tmp_path, "--aggregation", "naive")
    assert counts.keys() >= SUMMARY_FIELDS
    assert _predictions(str(counts["questions_csv"])) == _predictions(str(naive["questions_csv"]))
    assert counts["em"] == naive["em"] and counts["f1"] == naive["f1"]
    assert counts["num_docs"] == 32 and counts["num_questions"] == 32
    assert counts["bank_bytes"] == 32 * 3  # K = 2 codes x 9 bits = 18 bits -> 3 bytes per document
    assert counts["bytes_per_doc"] == 3.0
    header = len(encode_codebook(np.zeros((0, 1), dtype=np.float32)))
    assert counts["codebook_bytes"] == header + 512 * 64 * 4  # codebook format 1, float32
    assert counts["full_memory_bytes_per_doc"] == 2 * 64 * 4  # K x D float32
    assert counts["peak_gpu_memory_bytes"] is None and counts["device"] == "cpu"
    assert counts["adaptation_ms_per_doc"] > 0 and counts["inference_ms_per_query"] > 0
    assert (
        counts["memory"] == "compressed" and counts["aggregation"] == "counts" and counts["preset"] == "tiny"
    )
    with open(str(counts["questions_csv"]), newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0].keys() == {"qa_id", "doc_id", "question", "answers", "prediction", "em", "f1"}


@pytest.mark.slow
def test_eval_memory_modes_and_paper_decoding(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    full = _eval(data, run, tmp_path, "--memory", "full")
    assert full["bank_bytes"] == 32 * 2 * 64 * 4 and full["codebook_bytes"] == 0
    none = _eval(data, run, tmp_path, "--memory", "none")
    assert none["bank_bytes"] == 0 and none["memory"] == "none"
    beams = _eval(data, run, tmp_path, "--decoding", "paper")
    assert beams["decoding"] == "beam12x4"


@pytest.mark.slow
def test_eval_retrieve_reads_only_the_retrieved_documents(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = trained
    whole = _eval(data, run, tmp_path, "--aggregation", "counts")
    every = _eval(data, run, tmp_path, "--retrieve", "32")  # k = the bank: the same memory, reordered
    assert every["retrieve"] == 32 and every["recall_at_k"] == 1.0 and whole["recall_at_k"] is None
    assert _predictions(str(every["questions_csv"])) == _predictions(str(whole["questions_csv"]))
    two = _eval(data, run, tmp_path, "--retrieve", "2")
    assert two["retrieve"] == 2 and 0.0 <= two["recall_at_k"] <= 1.0  # type: ignore[operator]
    assert str(two["questions_csv"]).endswith("compressed-retrieve2-32docs-greedy_questions.csv")
    r = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(run / "checkpoints" / "last"),
            "--data",
            str(data / "test.csv"),
            "--memory",
            "full",
            "--retrieve",
            "2",
        ],
    )
    assert r.exit_code != 0 and "--retriever keys needs --memory compressed" in str(r.exception or r.output)
    text = _eval(data, run, tmp_path, "--memory", "full", "--retrieve", "2", "--retriever", "bm25")
    assert text["retriever"] == "bm25" and text["memory"] == "full" and 0.0 <= text["recall_at_k"] <= 1.0  # type: ignore[operator]
    assert str(text["questions_csv"]).endswith("full-retrieve2bm25-32docs-greedy_questions.csv")
    text = _eval(data, run, tmp_path, "--memory", "full", "--retrieve", "2", "--retriever", "sketch")
    assert text["retriever"] == "sketch" and 0.0 <= text["recall_at_k"] <= 1.0  # type: ignore[operator]
    assert str(text["questions_csv"]).endswith("full-retrieve2sketch-32docs-greedy_questions.csv")


def test_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,question,answers\ndoc,q\n")
    ckpt = tmp_path / "nothing"
    proc = run_mbc("eval", "--checkpoint", str(ckpt), "--data", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "no checkpoint at" in proc.stderr
    proc = run_mbc("train", "--preset", "nope", "--dry-run")
    assert proc.returncode == 2 and "unknown preset 'nope'" in proc.stderr


def test_malformed_training_file_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,question,answers\ndoc,q,a\ndoc two,q2\n")
    proc = run_mbc("train", "--train", str(bad), "--val", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}:3: expected 3 fields, found 2"


@pytest.mark.slow
def test_train_keys_writes_a_key_head_that_eval_retrieves_by(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    data, run = trained
    ckpt = tmp_path / "ckpt"
    shutil.copytree(run / "checkpoints" / "last", ckpt)  # the shared checkpoint keeps no key head
    r = runner.invoke(
        app,
        [
            "train-keys",
            "--checkpoint",
            str(ckpt),
            "--data",
            str(data / "train.csv"),
            "--val-data",
            str(data / "test.csv"),
            "--steps",
            "30",
            "--batch-size",
            "32",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{") :])
    assert (ckpt / "key_head.safetensors").is_file() and report["file"] == str(ckpt / "key_head.safetensors")
    assert report["documents"] == 96 and report["heldout_documents"] == 10
    assert report["val"]["documents"] == 32 and 0.0 <= report["val"]["recall_at_8"] <= 1.0
    assert (
        report["val"]["recall_at_1"] <= report["val"]["recall_at_8"] <= report["val"]["recall_at_32"] == 1.0
    )
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(data / "test.csv"), "--num-docs", "32"]
    r = runner.invoke(app, [*args, "--out", str(out), "--retrieve", "8"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{") :])
    assert summary["retriever"] == "learned keys"
    assert summary["recall_at_k"] == pytest.approx(report["val"]["recall_at_8"], abs=1e-6)  # one ranking
    bad = runner.invoke(
        app, ["train-keys", "--checkpoint", str(tmp_path / "nowhere"), "--data", str(data / "train.csv")]
    )
    assert bad.exit_code != 0 and "no checkpoint" in str(bad.exception or bad.output)
