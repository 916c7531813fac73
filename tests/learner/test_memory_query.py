"""``ModelConfig.memory_query``: the aggregator's query reads the question (MAC/MBC) or pretraining's
fixed reconstruction query (the prefix then restates the memory; the LM reads the question)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from learner.checkpoint import load_checkpoint, resolve_checkpoint
from learner.errors import ConfigValueError
from learner.model.build import build_model
from learner.model.memory import Memory
from learner.text.batching import TextBatcher, pad
from learner.text.queries import RECONSTRUCT, TASK_QUERIES
from learner.text.tokenizers import Tokenizers, train_tokenizer
from learner.training.spec import RunSpec
from learner.training.trainer import Trainer
from tests.learner.helpers import ONE_STEP_TRAIN, small_model_config, small_synth

QUESTIONS = ["what does alice do", "where does bob live"]


def _tokenizers() -> Tokenizers:
    bpe = train_tokenizer([*QUESTIONS, "alice works as a baker", TASK_QUERIES[RECONSTRUCT]] * 5, 80)
    return Tokenizers(bpe, bpe, shared=True)


def test_reconstruct_reads_the_fixed_query_for_every_question_and_the_lm_still_reads_the_question() -> None:
    tok = _tokenizers()
    asked = TextBatcher(tok, small_model_config())
    fixed = TextBatcher(tok, small_model_config(memory_query="reconstruct"))
    by_question = asked.questions_amort(QUESTIONS)
    assert by_question[0] != by_question[1]
    query = asked.questions_amort([TASK_QUERIES[RECONSTRUCT]])[0]
    assert fixed.questions_amort(QUESTIONS) == [query, query]
    assert fixed.questions_lm(QUESTIONS) == asked.questions_lm(QUESTIONS)  # the prompt keeps the question


@pytest.mark.parametrize("mode", ["question", "reconstruct"])
def test_the_aggregated_prefix_depends_on_the_question_only_when_asked_to(mode: str) -> None:
    torch.manual_seed(0)
    tok = _tokenizers()
    cfg = small_model_config(memory_query=mode)
    model = build_model(cfg, "scratch", tok).eval()
    q_ids, q_mask = pad(TextBatcher(tok, cfg).questions_amort(QUESTIONS), tok.amort_pad_id)
    memory = Memory(torch.randn(6, model.lm.hidden))
    with torch.no_grad():
        out = model.aggregator(q_ids, q_mask, memory)  # (2, K, D)
    same = torch.allclose(out[0], out[1])
    assert same == (mode == "reconstruct")


def test_an_unknown_memory_query_is_a_config_error() -> None:
    with pytest.raises(ConfigValueError, match="memory_query must be one of question, reconstruct"):
        dataclasses.replace(small_model_config(), memory_query="answer").validate()  # type: ignore[arg-type]


def test_the_setting_survives_the_checkpoint(tmp_path: Path) -> None:
    train, val = small_synth(tmp_path)
    tcfg = dataclasses.replace(ONE_STEP_TRAIN, oracle_fraction=1.0)
    spec = RunSpec(tmp_path / "run", small_model_config(max_doc_tokens=48, memory_query="reconstruct"), tcfg)
    Trainer(spec, train, val, resume=False, progress=False).run(max_steps=1)
    _, _, meta = load_checkpoint(resolve_checkpoint(tmp_path / "run", "last"))
    assert meta.model.memory_query == "reconstruct"
