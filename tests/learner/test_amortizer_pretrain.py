"""`mbc pretrain-amortizer` on a tiny random Llama standing in for SmolLM2: chunks and shapes, only
trainable weights move, the memory gap opens on a tiny corpus, the checkpoint starts `mbc train`
(--init-from), --max-minutes stops and saves, --resume continues, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from corpora.errors import DatasetError
from corpora.texts import load_texts
from infra.errors import MbcError
from learner.checkpoint import load_checkpoint
from learner.errors import CheckpointError, ConfigValueError
from learner.model.config import LMSpec, ModelConfig
from learner.model.lora import is_lora_parameter
from learner.pretraining.batches import chunk_texts, collate_pretrain, query_batch
from learner.pretraining.objective import PretrainConfig, lm_logits, memory_gap, pretrain_loss
from learner.pretraining.run import AmortizerPretrainer
from learner.text.queries import CONTINUE, RECONSTRUCT
from learner.text.tokenizers import train_tokenizer
from tests.learner.helpers import WORDS, tiny_llama
from tests.learner.test_smollm2 import lm_config
from tests.mbc_process import run_mbc

runner = CliRunner()
rng = random.Random(0)
TEXTS = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(8)]  # 8 random 6-word texts


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, width 64) + a BPE tokenizer whose words are single tokens."""
    root = tmp_path_factory.mktemp("llama")
    tok = train_tokenizer(TEXTS * 3, 300)
    torch.manual_seed(0)
    lm = tiny_llama(vocab=len(tok), layers=2, hidden=64, heads=4)
    lm.save_pretrained(root)
    tok.save_pretrained(root)
    return root


def _cfg(folder: Path) -> ModelConfig:
    return lm_config(
        lm=LMSpec(str(folder), "llama", 64, 2, 4, 4, 128, 64, 64, dropout=0.0), max_doc_tokens=32
    )


def _pretrainer(folder: Path, run: Path, texts: list[str] | None = None, **kw: object) -> AmortizerPretrainer:
    settings: dict[str, object] = dict(
        objective="reconstruct", steps=80, batch_size=8, lr=1e-2, warmup_steps=0, doc_tokens=32
    )
    settings |= dict(log_every=20, eval_chunks=8, seed=0, memory="full") | kw
    cfg = PretrainConfig(**settings)  # type: ignore[arg-type]
    return AmortizerPretrainer(run, _cfg(folder), cfg, texts or TEXTS * 8, str(folder), progress=False)


def test_chunks_batches_and_logits_have_the_documented_shapes(llama_dir: Path) -> None:
    p = _pretrainer(llama_dir, llama_dir.parent / "shapes", memory="compressed", objective="both")
    tok = p.tok
    long_text = " ".join(WORDS * 3)
    n = len(tok.lm(long_text, add_special_tokens=False)["input_ids"])
    chunks = chunk_texts([long_text], tok, doc_tokens=16, cont_tokens=5, objective="both", min_tokens=1)
    assert [len(c.doc) for c in chunks] == [16] * (n // 16) + ([n % 16] if n % 16 else [])
    assert all(c.cont == chunks[i + 1].doc[:5] for i, c in enumerate(chunks[:-1])) and chunks[-1].cont == []
    assert len(chunk_texts([long_text], tok, 16, 5, "continue", min_tokens=1)) == len(chunks) - 1
    batch = collate_pretrain(chunks[:3], "both", 1, tok.amort_pad_id, tok.lm_pad_id)
    assert batch.doc_ids.shape == (3, 16) and batch.lm_ids.shape == (6, 17)  # 3 reconstruct + 3 continue
    assert (
        batch.row_task.tolist() == [RECONSTRUCT] * 3 + [CONTINUE] * 3
        and batch.row_doc.tolist() == [0, 1, 2] * 2
    )
    assert (batch.lm_labels[:, 0] == -100).all() and (batch.lm_ids[:, 0] == 1).all()
    assert (
        batch.lm_labels[0, 1:].tolist() == chunks[0].doc
        and batch.lm_labels[3, 1:6].tolist() == chunks[0].cont
    )
    q_ids, q_mask = query_batch(tok, 16)
    assert q_ids.shape[0] == 2
    vectors = torch.randn(3, 2, 64)  # (N, K, D)
    assert lm_logits(p.model, batch, vectors, q_ids, q_mask).shape == (6, 17, len(tok.lm))  # (R, T, V)
    out = pretrain_loss(p.model, batch, q_ids, q_mask, "compressed")
    assert set(out.task_loss) == {"reconstruct", "continue"} and out.loss.dim() == 0 and out.perplexity > 0


def test_a_step_moves_only_the_trainable_parts_and_never_the_frozen_base(
    llama_dir: Path, tmp_path: Path
) -> None:
    p = _pretrainer(llama_dir, tmp_path / "run", memory="compressed", objective="both", batch_size=4)
    before = {n: t.detach().clone() for n, t in p.model.state_dict().items()}
    for _ in range(3):  # the expander starts at zero: gradients reach the upstream parts from step 2 on
        p.step()
    after = p.model.state_dict()
    frozen = [n for n in before if n.startswith("lm.") and not is_lora_parameter(n)]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)  # bit-identical
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    trainable = {n for n, q in p.model.named_parameters() if q.requires_grad}
    assert changed - trainable <= {
        "codebook.vectors",
        "codebook.usage",
        "codebook.ema_size",
        "codebook.ema_sum",
    }
    for part in (
        "amortizer.",
        "aggregator.blocks",
        "expander.",
        ".lora_B.default.",
        ".lora_B.amort.",
        ".lora_B.question.",
    ):
        assert any(part in n for n in changed), part
    assert "amortizer.summary" in changed and "codebook.vectors" in changed


def test_bf16_frozen_base_under_autocast_as_on_the_gpu(llama_dir: Path, tmp_path: Path) -> None:
    """The H200 path (bf16 frozen base, fp32 trainables, bf16 autocast), on the CPU."""
    from learner.model.precision import cast_frozen_base

    p = _pretrainer(llama_dir, tmp_path / "run", memory="compressed", objective="both", batch_size=4)
    cast_frozen_base(p.model, torch.bfloat16)
    batch = p._batch(p.train_set[:4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pretrain_loss(p.model, batch, p.q_ids, p.q_mask, "compressed")
        gap = memory_gap(p.model, [batch], p.q_ids, p.q_mask, "compressed")
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(v == v for v in gap.values())
    assert all(q.dtype == torch.float32 for q in p.params) and p.model.amortizer.summary.grad is not None


def test_a_few_dozen_steps_open_a_clear_gap_between_memory_and_no_memory(
    llama_dir: Path, tmp_path: Path
) -> None:
    p = _pretrainer(llama_dir, tmp_path / "run")
    start = p.evaluate()
    assert abs(start["gap_reconstruct"]) < 0.02  # untrained: the memory carries next to nothing
    result = p.run()
    end = result.last_metrics
    print({k: round(v, 3) for k, v in end.items() if k.startswith("heldout")})
    # 8 random 6-word texts, held-out copies: only the memory tells the LM which words come
    assert end["heldout_own_loss_reconstruct"] < end["heldout_zero_loss_reconstruct"] - 0.15
    assert end["heldout_own_loss_reconstruct"] < end["heldout_shuffled_loss_reconstruct"] - 0.15
    assert end["heldout_own_acc_reconstruct"] > end["heldout_zero_acc_reconstruct"] + 0.2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [20, 40, 60, 80]
    assert {"train_loss_reconstruct", "train_acc_reconstruct", "heldout_gap_reconstruct"} <= records[
        -1
    ].keys()


def test_the_checkpoint_starts_mbc_train_through_init_from(llama_dir: Path, tmp_path: Path) -> None:
    from corpora.qa import load_dataset
    from learner.data.synth.generator import SynthConfig, write_all
    from learner.model.config import TrainConfig
    from learner.training.init import build_for_training
    from learner.training.spec import RunSpec
    from learner.training.trainer import Trainer

    p = _pretrainer(llama_dir, tmp_path / "pre", memory="compressed", steps=4, log_every=2)
    p.run()
    pretrained = {n: t.detach().clone() for n, t in p.model.state_dict().items()}
    loaded, _, meta = load_checkpoint(tmp_path / "pre" / "checkpoints" / "last")  # `mbc eval`'s loader
    assert meta.step == 4 and meta.train_memory == "compressed" and meta.lm_source == str(llama_dir)
    assert all(torch.equal(t, pretrained[n]) for n, t in loaded.state_dict().items())
    write_all(
        SynthConfig(pretrain_docs=8, train_docs=16, val_docs=8, test_docs=8, bank_size=8, seed=1), tmp_path
    )
    train, val = load_dataset(tmp_path / "train.csv"), load_dataset(tmp_path / "val.csv")
    tcfg = TrainConfig(
        epochs=1, batch_size=8, grad_accum=1, patience=None, val_bank_docs=4, val_max_questions=4
    )
    spec = RunSpec(
        tmp_path / "qa", _cfg(llama_dir), tcfg, "pretrained", str(llama_dir), init_from=tmp_path / "pre"
    )
    model, _, _ = build_for_training(spec, train, progress=False)
    for name, t in model.state_dict().items():
        assert torch.equal(t, pretrained[name]), name  # trainable weights taken, frozen base the same file
    assert Trainer(spec, train, val, resume=False, progress=False).run(max_steps=1).state.step == 1
    other_cfg = dataclasses.replace(_cfg(llama_dir), num_vectors=3)  # K = 3 instead of 2
    other = RunSpec(
        tmp_path / "qa2", other_cfg, tcfg, "pretrained", str(llama_dir), init_from=tmp_path / "pre"
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        build_for_training(other, train, progress=False)


def test_max_minutes_stops_saves_and_resume_continues(llama_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = _pretrainer(llama_dir, run, steps=50, log_every=10).run(max_minutes=1e-4)
    assert result.state.step == 1  # out of time after the first step, `last` saved
    state = json.loads((run / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["state"]["step"] == 1 and state["pretrain"]["steps"] == 50
    resumed = AmortizerPretrainer(
        run, _cfg(llama_dir), PretrainConfig(steps=3), TEXTS * 8, str(llama_dir), resume=True, progress=False
    )
    assert resumed.cfg.lr == 1e-2 and resumed.state.position == 8  # the run's settings, its place in the data
    assert resumed.run().state.step == 3
    with pytest.raises(ConfigValueError, match="same data"):
        AmortizerPretrainer(run, _cfg(llama_dir), PretrainConfig(), TEXTS * 4, str(llama_dir), resume=True)


def test_text_formats(tmp_path: Path) -> None:
    reuters = tmp_path / "r.jsonl"
    rows = [
        {"id": "1", "title": "COCOA", "body": "Showers continued."},
        {"id": "2", "title": "X", "body": ""},
    ]
    reuters.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert load_texts(reuters, "reuters") == ["COCOA\nShowers continued."]
    plain = tmp_path / "t.jsonl"
    plain.write_text('{"text": "one"}\n\n{"text": "two"}\n')
    assert load_texts(plain, "jsonl") == ["one", "two"]
    squad = tmp_path / "s.json"
    para = {
        "context": "Paris is in France.",
        "qas": [{"id": "q", "question": "?", "answers": [{"text": "x"}]}],
    }
    squad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [para, para]}]}))
    assert load_texts(squad, "squad") == ["Paris is in France."]
    with pytest.raises(DatasetError, match="missing field 'text'"):
        load_texts(reuters, "jsonl")


def test_bad_input_is_one_line_errors(llama_dir: Path, tmp_path: Path) -> None:
    from mbc.cli import app

    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"id": "1", "title": "T", "body": "  "}\n')
    base = ["pretrain-amortizer", "--run-dir", str(tmp_path / "run"), "--base-lm", str(llama_dir)]
    cases = {
        "does not exist": ["--data", str(tmp_path / "nope.jsonl")],
        "no non-empty text": ["--data", str(empty)],
        "unknown text format 'csv'": ["--data", str(empty), "--format", "csv"],
        "objective must be": ["--data", str(empty), "--objective", "recall"],
    }
    for message, args in cases.items():
        result = runner.invoke(app, base + args)
        assert isinstance(result.exception, MbcError), (message, result.output)
        assert message in str(result.exception) and "\n" not in str(result.exception)
    proc = run_mbc(*base, "--data", str(tmp_path / "x"))
    assert proc.returncode != 0 and proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def test_cli_end_to_end_on_the_smollm2_preset_shape(llama_dir: Path, tmp_path: Path) -> None:
    """The smollm2-135m preset (K = 12, aggregator, expander) built on the tiny Llama: the command runs,
    prints its summary and writes metrics and `last`."""
    from mbc.cli import app

    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 4))
    args = [
        "pretrain-amortizer",
        "--preset",
        "smollm2-135m",
        "--base-lm",
        str(llama_dir),
        "--data",
        str(data),
    ]
    args += ["--format", "jsonl", "--run-dir", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2"]
    args += ["--log-every", "2", "--eval-chunks", "4", "--doc-tokens", "16", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["state"]["step"] == 2 and "heldout_zero_loss_reconstruct" in summary["last_metrics"]
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").is_file()
