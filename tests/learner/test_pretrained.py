"""`--init pretrained`: networks and tokenizers load with from_pretrained from local directories
that the test writes itself (no hub), and checkpoints of such models reload their base LM from there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import T5Model

from corpora.qa import load_dataset
from learner.checkpoint import load_checkpoint
from learner.data.synth.generator import SynthConfig, write_all
from learner.model.amortization import t5_config_from_spec
from learner.model.build import build_model
from learner.model.config import TrainConfig
from learner.text.tokenizers import Tokenizers, train_tokenizer
from learner.training.spec import RunSpec
from learner.training.trainer import Trainer
from tests.learner.helpers import small_model_config, tiny_gpt2, tiny_llama


@pytest.fixture(scope="module")
def local_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    tok = train_tokenizer(["alice works as a baker", "what does alice do", "bob lives in oslo"] * 5, 64)
    paths = {"t5": root / "t5", "gpt2": root / "gpt2", "llama": root / "llama"}
    cfg = small_model_config()
    T5Model(t5_config_from_spec(cfg.amort, len(tok), 0, 1)).save_pretrained(paths["t5"])
    tiny_gpt2(vocab=len(tok), layers=2).save_pretrained(paths["gpt2"])
    tiny_llama(vocab=len(tok), layers=2).save_pretrained(paths["llama"])
    for p in paths.values():
        tok.save_pretrained(p)
    return paths


def _config(paths: dict[str, Path], arch: str) -> object:
    cfg = small_model_config(arch)
    t5 = dataclasses.replace(cfg.amort, name=str(paths["t5"]))
    lm = dataclasses.replace(cfg.lm, name=str(paths[arch]))
    return dataclasses.replace(cfg, amort=t5, question=t5, lm=lm)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_build_from_local_pretrained_directories(local_models: dict[str, Path], arch: str) -> None:
    from learner.text.tokenizers import load_tokenizer

    cfg = _config(local_models, arch)
    tok = Tokenizers(load_tokenizer(str(local_models[arch])), load_tokenizer(str(local_models["t5"])))
    model = build_model(cfg, "pretrained", tok)  # type: ignore[arg-type]
    saved_t5 = T5Model.from_pretrained(local_models["t5"]).state_dict()
    for k, v in saved_t5.items():
        assert torch.equal(model.amortizer.t5.state_dict()[k], v), k
        assert torch.equal(model.aggregator.question_encoder.t5.state_dict()[k], v), k
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(local_models[arch])
    ids = torch.randint(3, len(tok.lm), (2, 6))
    with torch.no_grad():  # LoRA starts as a no-op: the wrapped LM computes exactly what was saved
        assert torch.equal(model.lm.model(input_ids=ids).logits, ref(input_ids=ids).logits)


@pytest.mark.slow
def test_pretrained_run_checkpoint_reloads_the_base_lm_from_its_source(
    local_models: dict[str, Path], tmp_path: Path
) -> None:
    write_all(
        SynthConfig(pretrain_docs=8, train_docs=32, val_docs=8, test_docs=8, bank_size=8, seed=2),
        tmp_path / "d",
    )
    train, val = load_dataset(tmp_path / "d/train.csv"), load_dataset(tmp_path / "d/val.csv")
    cfg = _config(local_models, "gpt2")
    tcfg = TrainConfig(
        epochs=1, batch_size=8, grad_accum=1, lr=1e-3, patience=None, val_bank_docs=8, val_max_questions=4
    )
    trainer = Trainer(
        RunSpec(tmp_path / "run", cfg, tcfg, "pretrained"), train, val, resume=False, progress=False
    )  # type: ignore[arg-type]
    trainer.run()
    path = tmp_path / "run/checkpoints/last"
    model, _, meta = load_checkpoint(path)
    assert meta.init == "pretrained" and meta.lm_source == str(local_models["gpt2"])
    ref = trainer.acc.unwrap_model(trainer.model).state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert [k for k in keys if k.startswith("lm.")] and all("lora_" in k for k in keys if k.startswith("lm."))
