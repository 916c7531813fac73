"""``--freeze-writer`` (TrainConfig.freeze_writer): QA training over a pretrained memory writer. The
amortizer, its LoRA adapter on the shared base LM and the codebook (vectors, usage, code-space
statistics) stay exactly as they were; the reading side learns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from learner.errors import ConfigValueError
from learner.model.build import build_model
from learner.model.mbc import MBCModel
from learner.training.spec import RunSpec
from learner.training.trainer import Trainer
from tests.learner.helpers import ONE_STEP_TRAIN, random_batch, small_model_config
from tests.learner.test_smollm2 import lm_config


def _writer_state(model: MBCModel) -> dict[str, torch.Tensor]:
    """Everything that decides a document's stored codes."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {
        k: v
        for k, v in state.items()
        if k.startswith(("amortizer.", "codebook.")) or ".amort." in k  # the amortizer's adapter on the LM
    }


def _reader_state(model: MBCModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("aggregator.")}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in before if not torch.equal(before[k], after[k])]


def test_a_frozen_writer_keeps_every_code_deciding_weight_and_statistic_while_the_reader_learns() -> None:
    torch.manual_seed(0)
    model = build_model(lm_config(codes_per_vector=2, code_dim=32, code_combine="sum"), "scratch", None)
    model.freeze_writer()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not [
        n for n in trainable if n.startswith(("amortizer.", "codebook.")) or ".amort." in n
    ]
    assert any(".question." in n for n in trainable)  # the question encoder's adapter still learns
    writer, reader = _writer_state(model), _reader_state(model)
    opt = torch.optim.SGD([p for n, p in model.named_parameters() if p.requires_grad], lr=0.1)
    model.train()
    for seed in range(3):
        out = model(random_batch(4, seed=seed))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert _changed(writer, _writer_state(model)) == []  # codebook usage and code-space stats too
    assert _changed(reader, _reader_state(model))


def test_an_unfrozen_writer_does_move_under_the_same_steps() -> None:
    # the control of the test above: the same steps change the writer when it is not frozen
    torch.manual_seed(0)
    model = build_model(lm_config(codes_per_vector=2, code_dim=32, code_combine="sum"), "scratch", None)
    writer = _writer_state(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    out = model(random_batch(4))
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    moved = _changed(writer, _writer_state(model))
    assert any(k.startswith("codebook.") for k in moved) and any(".amort." in k for k in moved)


def test_trainer_with_freeze_writer_leaves_the_writer_of_its_init_as_it_was(tmp_path: Path) -> None:
    from tests.learner.helpers import small_synth

    train, val = small_synth(tmp_path)
    tcfg = dataclasses.replace(ONE_STEP_TRAIN, freeze_writer=True)
    trainer = Trainer(
        RunSpec(tmp_path / "run", small_model_config(max_doc_tokens=48), tcfg),
        train,
        val,
        resume=False,
        progress=False,
    )
    model = trainer.mbc_model
    writer, reader = _writer_state(model), _reader_state(model)
    trainer.run(max_steps=2)
    assert _changed(writer, _writer_state(model)) == []
    assert _changed(reader, _reader_state(model))


@pytest.mark.parametrize("memory", ["none", "paragraph"])
def test_freeze_writer_on_a_run_without_memory_is_a_config_error(memory: str) -> None:
    with pytest.raises(ConfigValueError, match="has no memory writer"):
        dataclasses.replace(ONE_STEP_TRAIN, memory=memory, freeze_writer=True).validate()  # type: ignore[arg-type]
