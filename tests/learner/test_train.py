"""Meta-training: exact resume, early stopping that stops, backprop dropout, atomic checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from corpora.qa import load_dataset
from corpora.types import QADataset
from learner.checkpoint import load_checkpoint, resolve_checkpoint
from learner.data.synth.generator import SynthConfig, write_all
from learner.model.config import TrainConfig
from learner.model.memory import Memory
from learner.training.spec import RunSpec
from learner.training.trainer import Trainer
from tests.learner.helpers import random_batch, small_model_config

TRAIN = TrainConfig(
    epochs=2,
    batch_size=8,
    grad_accum=2,
    lr=1e-3,
    grad_clip=1.0,
    patience=None,
    shuffle="groups",
    val_bank_docs=8,
    val_max_questions=8,
    tokenizer_vocab_size=400,
    seed=5,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[QADataset, QADataset]:
    out = tmp_path_factory.mktemp("synth")
    write_all(
        SynthConfig(pretrain_docs=32, train_docs=64, val_docs=16, test_docs=16, bank_size=8, seed=1), out
    )
    return load_dataset(out / "train.csv"), load_dataset(out / "val.csv")


def _run(
    run_dir: Path,
    data: tuple[QADataset, QADataset],
    tcfg: TrainConfig,
    resume: bool = False,
    max_steps: int | None = None,
) -> Trainer:
    spec = RunSpec(run_dir, small_model_config(max_doc_tokens=48), tcfg)
    trainer = Trainer(spec, data[0], data[1], resume=resume, progress=False)
    trainer.run(max_steps=max_steps)
    return trainer


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    model = trainer.acc.unwrap_model(trainer.model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path: Path, data: tuple[QADataset, QADataset]) -> None:
    straight = _run(tmp_path / "a", data, TRAIN)
    assert straight.state.step == 2 * 4 and straight.state.finished
    _run(tmp_path / "b", data, TRAIN, max_steps=3)  # stops mid-epoch, saving `last`
    assert json.loads((tmp_path / "b/checkpoints/last/trainer_state.json").read_text())["step"] == 3
    resumed = _run(tmp_path / "b", data, TRAIN, resume=True)
    assert resumed.state.step == straight.state.step
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for i in opt_a:
        assert torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"])
    lines = [json.loads(x) for x in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert [x["split"] for x in lines] == ["train", "val", "train", "val"]
    assert {"val_loss", "em", "f1"} <= lines[1].keys()


@pytest.mark.slow
def test_early_stopping_stops_when_validation_loss_stops_improving(
    tmp_path: Path, data: tuple[QADataset, QADataset]
) -> None:
    # lr = 0 and float memory: the validation loss is exactly constant after the first evaluation
    tcfg = dataclasses.replace(TRAIN, memory="full", lr=0.0, epochs=10, patience=1)
    trainer = _run(tmp_path / "run", data, tcfg)
    assert trainer.state.stopped_early and trainer.state.epoch == 3
    vals = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert [v["bad_evals"] for v in vals] == [0, 1, 2]
    assert len({v["val_loss"] for v in vals}) == 1
    for name in ("last", "best-loss", "best-em", "best-f1"):
        assert (tmp_path / "run/checkpoints" / name / "model.safetensors").is_file()
    assert not list((tmp_path / "run/checkpoints").glob(".*"))  # no temporary or old directories left


def test_backprop_dropout_blocks_gradients_of_the_no_grad_documents() -> None:
    from learner.model.build import build_model

    model = build_model(small_model_config(), "scratch", None).eval()
    batch = random_batch(6)
    z = model.amortize(batch.doc_ids, batch.doc_mask, n_grad=2)
    params = [p for p in model.amortizer.parameters() if p.requires_grad]
    grads = torch.autograd.grad(z[2:].sum(), params, allow_unused=True, retain_graph=True)
    assert all(g is None or not g.any() for g in grads)
    assert any(g is not None and g.any() for g in torch.autograd.grad(z[:2].sum(), params, allow_unused=True))
    # the loss scores the first n questions against a bank of all six documents
    with torch.no_grad():
        out = model(batch, n_grad=2)
        zz = model.amortize(batch.doc_ids, batch.doc_mask)
        q = model.codebook(zz).quantized
        prefix = model.prefix(batch.q_ids[:2], batch.q_mask[:2], Memory(q.reshape(-1, q.shape[-1])))
        ref = model.lm(batch.qa_ids[:2], batch.qa_mask[:2], prefix, labels=batch.qa_labels[:2]).loss
    assert torch.allclose(out.qa_loss, ref, atol=1e-6)
    assert TrainConfig(batch_size=16, backprop_fraction=0.5).loader_batch_size == 32


def test_checkpoint_round_trip_and_crash_recovery(tmp_path: Path) -> None:
    from learner.checkpoint import CheckpointMeta, save_checkpoint
    from learner.model.build import arch_configs, build_model
    from learner.text.tokenizers import Tokenizers, train_tokenizer

    tok = train_tokenizer(["alice works as a baker", "what does alice do"], 300)
    cfg = small_model_config()
    model = build_model(cfg, "scratch", None)
    with torch.no_grad():
        model.codebook.usage.fill_(0.25)
        model.codebook.version.fill_(3)
    meta = CheckpointMeta(cfg, TRAIN, "scratch", "compressed", arch_configs(model), None, 7)
    path = save_checkpoint(tmp_path / "ck" / "last", model, Tokenizers(tok, tok, True), meta, {"step": 7}, {})
    save_checkpoint(path, model, Tokenizers(tok, tok, True), meta, {"step": 7}, {})  # overwrite in place
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["last"]
    loaded, tokenizers, meta2 = load_checkpoint(path)
    assert meta2.step == 7 and meta2.model == cfg
    assert int(loaded.codebook.version) == 3 and float(loaded.codebook.usage[0]) == 0.25
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    assert tokenizers.lm("alice works")["input_ids"] == tok("alice works")["input_ids"]
    # a crash between the two renames leaves only the renamed-aside copy: it is restored
    path.rename(tmp_path / "ck" / ".last.old-123")
    assert resolve_checkpoint(tmp_path / "ck" / "last") == path and (path / "config.json").is_file()


def test_kmeans_finds_separated_clusters() -> None:
    from learner.model.kmeans import kmeans

    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, generator=g) * 0.1 + 5.0
    b = torch.randn(70, 3, generator=g) * 0.1 - 5.0
    centroids, counts = kmeans(torch.cat([a, b]), 2, iters=5, generator=g)
    order = centroids[:, 0].argsort()
    assert torch.allclose(centroids[order], torch.stack([b.mean(0), a.mean(0)]), atol=1e-5)
    assert counts[order].tolist() == [70.0, 50.0]


def test_attention_loss_is_minus_log_attention_mass_on_the_own_document() -> None:
    import torch.nn.functional as F

    from learner.model.build import build_model
    from learner.training.warmup import own_document_attention_loss

    model = build_model(small_model_config(), "scratch", None).eval()
    z, x = torch.randn(3, 4, 32), torch.randn(3, 4, 32)
    block = model.aggregator.blocks[0]
    q = block._split(block.to_q(block.norm_q(x)))  # (B, H, K, hd)
    k = block._split(block.to_k(block.norm_mem(z.reshape(-1, 32))))  # (H, B*K, hd)
    with torch.no_grad():
        att = F.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1).view(3, q.shape[1], 4, 3, 4).sum(-1)
        expected = -torch.log(att[torch.arange(3), :, :, torch.arange(3)]).mean()
        assert torch.allclose(own_document_attention_loss(model, z, x), expected, atol=1e-5)
