"""The base-LM family table: an unknown family is UnknownModelFamily wherever it first shows up
(config validation, a random-weight config, KV-LoRA, BaseLM), never a silent Llama."""

from __future__ import annotations

import dataclasses

import pytest

from learner.errors import ConfigValueError, UnknownModelFamily
from learner.model.base_lm import BaseLM, lm_config_from_spec
from learner.model.config import LMSpec
from learner.model.families import FAMILIES, family
from learner.model.lora import apply_kv_lora
from learner.model.presets import get_preset
from tests.learner.helpers import tiny_gpt2

MISTRAL = LMSpec("m", "mistral", 32, 2, 4, None, 64, 64, 64, dropout=0.0)


def test_unknown_family_is_a_clear_error_everywhere() -> None:
    message = r"unknown base-LM family 'mistral'; known: gpt2, llama"
    with pytest.raises(UnknownModelFamily, match=message):
        family("mistral")
    with pytest.raises(UnknownModelFamily, match=message):
        lm_config_from_spec(MISTRAL, 64, 0, 1, 1)
    cfg = dataclasses.replace(get_preset("tiny").model, lm=MISTRAL)
    with pytest.raises(UnknownModelFamily, match=message):
        cfg.validate()
    with pytest.raises(UnknownModelFamily, match=message):
        apply_kv_lora(tiny_gpt2(), "mistral", r=2, alpha=4, dropout=0.0, last_n=1)
    with pytest.raises(UnknownModelFamily, match=message):
        BaseLM(tiny_gpt2(), "mistral")
    assert issubclass(UnknownModelFamily, ConfigValueError)  # a user's mistake: one line, exit 2


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_builds_its_config_and_names_its_kv_modules(name: str) -> None:
    fam = family(name)
    spec = LMSpec("x", name, 32, 3, 4, None, 64, 64, 100, dropout=0.0)
    config = lm_config_from_spec(spec, 100, 0, 1, 1)
    assert config.model_type == fam.model_type
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (32, 3, 100)
    assert fam.layers_path.endswith(fam.layers_pattern)
    names = fam.kv_module_names([1, 2])
    assert len(names) == 2 * len(fam.kv_targets) and all(
        n.startswith(fam.layers_path + ".1.") for n in names[:1]
    )


def test_encoder_lm_needs_a_family_with_encoder_targets() -> None:
    cfg = dataclasses.replace(get_preset("tiny").model, encoder="lm")
    assert cfg.lm.arch == "gpt2" and family("gpt2").encoder_targets is None
    with pytest.raises(
        ConfigValueError, match='encoder="lm" needs a base-LM family with encoder LoRA targets'
    ):
        cfg.validate()
