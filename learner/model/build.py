"""Building an :class:`MBCModel`: from pretrained networks, from config (random weights), or from the
architecture configs stored in a checkpoint; plus the trainable-parameter breakdown.

With ``encoder="lm"`` the amortization network and the question encoder are
:class:`learner.model.lm_encoder.SummaryTokenEncoder` adapters on the base LM itself: no T5s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from transformers import AutoConfig, T5Config, T5Model

from learner.errors import ModelLoadError
from learner.model.adapters import adapter_of
from learner.model.amortization import PromptedT5, t5_config_from_spec
from learner.model.base_lm import BaseLM, lm_config_from_spec, lm_from_config, load_pretrained_lm
from learner.model.config import ModelConfig, T5Spec, TrainMemoryMode
from learner.model.families import family
from learner.model.lm_encoder import SummaryTokenEncoder
from learner.model.lora import is_lora_parameter
from learner.model.mbc import MBCModel
from learner.text.tokenizers import Tokenizers

Init = Literal["scratch", "pretrained"]


@dataclass(frozen=True)
class ArchConfigs:
    """The transformers configs of the three networks, as plain dicts (stored in checkpoints)."""

    amort: dict[str, Any]
    question: dict[str, Any]
    lm: dict[str, Any]


def _load_t5(spec: T5Spec, source: str) -> T5Model:
    try:
        return T5Model.from_pretrained(source)  # type: ignore[no-any-return]
    except OSError as e:
        raise ModelLoadError(f"cannot load T5 from {source!r}: {e}") from None


def build_model(
    cfg: ModelConfig,
    init: Init,
    tokenizers: Tokenizers | None,
    train_memory: TrainMemoryMode = "compressed",
    lm_source: str | None = None,
) -> MBCModel:
    """A new MBC model.

    ``init="pretrained"``: T5s from ``cfg.amort.name`` / ``cfg.question.name``, LM from ``lm_source`` or
    ``cfg.lm.name``. ``init="scratch"``: all three from config with random weights sized to the
    tokenizers (or to the spec's vocabulary when ``tokenizers`` is None, e.g. on the meta device),
    except the LM when ``lm_source`` is given (a local, already trained LM).
    """
    cfg.validate()
    if cfg.encoder == "lm":
        return assemble_on_lm(cfg, _base_lm(cfg, init, tokenizers, lm_source), train_memory)
    if init == "pretrained":
        amort_t5 = _load_t5(cfg.amort, cfg.amort.name)
        question_t5 = _load_t5(cfg.question, cfg.question.name)
    else:
        a_vocab = len(tokenizers.amort) if tokenizers else cfg.amort.vocab_size
        a_pad = tokenizers.amort_pad_id if tokenizers else 0
        a_eos = int(tokenizers.amort.eos_token_id) if tokenizers else 1
        amort_t5 = T5Model(t5_config_from_spec(cfg.amort, a_vocab, a_pad, a_eos))
        question_t5 = T5Model(t5_config_from_spec(cfg.question, a_vocab, a_pad, a_eos))
    return assemble(cfg, amort_t5, question_t5, _base_lm(cfg, init, tokenizers, lm_source), train_memory)


def _base_lm(cfg: ModelConfig, init: Init, tokenizers: Tokenizers | None, lm_source: str | None) -> Any:
    if lm_source is not None or init == "pretrained":
        return load_pretrained_lm(cfg.lm, lm_source or cfg.lm.name)
    vocab = len(tokenizers.lm) if tokenizers else cfg.lm.vocab_size
    pad = tokenizers.lm_pad_id if tokenizers else 0
    eos = tokenizers.lm_eos_id if tokenizers else 1
    return lm_from_config(lm_config_from_spec(cfg.lm, vocab, pad, eos, eos))


def assemble(
    cfg: ModelConfig,
    amort_t5: T5Model,
    question_t5: T5Model,
    lm_model: Any,
    train_memory: TrainMemoryMode = "compressed",
) -> MBCModel:
    d = lm_model.config.hidden_size
    amortizer = PromptedT5(amort_t5, cfg.num_vectors, d)
    question = PromptedT5(question_t5, cfg.num_vectors, d)
    return MBCModel(cfg, amortizer, question, BaseLM(lm_model, cfg.lm.arch), train_memory)


def assemble_on_lm(cfg: ModelConfig, lm_model: Any, train_memory: TrainMemoryMode = "compressed") -> MBCModel:
    """``encoder="lm"``: both encoders are named LoRA adapters + summary tokens on ``lm_model``."""
    d = lm_model.config.hidden_size
    r, alpha, k, h = cfg.encoder_lora_r, cfg.encoder_lora_alpha, cfg.num_vectors, cfg.encoder_mlp_hidden
    targets = family(cfg.lm.arch).require_encoder_targets()
    amortizer = SummaryTokenEncoder(lm_model, "amort", k, d, r, alpha, h, targets=targets)
    question = SummaryTokenEncoder(lm_model, "question", k, d, r, alpha, h, targets=targets)
    return MBCModel(cfg, amortizer, question, BaseLM(lm_model, cfg.lm.arch), train_memory)


LM_ENCODER_ARCH: dict[str, Any] = {"kind": "lm"}  # stands for the encoders' configs when encoder="lm"


def arch_configs(model: MBCModel) -> ArchConfigs:
    if model.config.encoder == "lm":
        return ArchConfigs(dict(LM_ENCODER_ARCH), dict(LM_ENCODER_ARCH), model.lm.model.config.to_dict())
    return ArchConfigs(
        amort=cast(PromptedT5, model.amortizer).t5.config.to_dict(),
        question=cast(PromptedT5, model.aggregator.question_encoder).t5.config.to_dict(),
        lm=model.lm.model.config.to_dict(),
    )


def build_from_arch(
    cfg: ModelConfig, arch: ArchConfigs, train_memory: TrainMemoryMode = "compressed"
) -> MBCModel:
    """Random-weight model with exactly the stored architecture (weights are loaded afterwards)."""
    lm_cfg = dict(arch.lm)
    lm_config = AutoConfig.for_model(lm_cfg.pop("model_type"), **lm_cfg)
    if cfg.encoder == "lm":
        return assemble_on_lm(cfg, lm_from_config(lm_config), train_memory)
    amort_t5 = T5Model(T5Config.from_dict(arch.amort))
    question_t5 = T5Model(T5Config.from_dict(arch.question))
    return assemble(cfg, amort_t5, question_t5, lm_from_config(lm_config), train_memory)


def build_on_meta(cfg: ModelConfig) -> MBCModel:
    """The preset's model on the meta device: shapes only, no memory (for parameter counts)."""
    with torch.device("meta"):
        return build_model(cfg, "scratch", None)


@dataclass(frozen=True)
class ParamBreakdown:
    amortization_aggregation: int  # amortization network + question encoder + cross-attention + expansion
    kv_lora: int
    codebook: int
    frozen_base_lm: int
    encoder_lora: int = 0  # encoder="lm": the amortizer's and question encoder's adapters on the base LM
    prefix_expander: int = 0  # part of amortization_aggregation, shown on its own line

    @property
    def trainable(self) -> int:
        return self.amortization_aggregation + self.kv_lora + self.codebook + self.encoder_lora

    def rows(self) -> list[tuple[str, int]]:
        rows = [("amortization + aggregation", self.amortization_aggregation)]
        rows += [("  of which prefix expander", self.prefix_expander)]
        if self.encoder_lora:
            rows.append(("encoder LoRA", self.encoder_lora))  # amortizer + question encoder adapters
        return [
            *rows,
            ("KV-LoRA", self.kv_lora),
            ("codebook", self.codebook),
            ("trainable total", self.trainable),
            ("frozen base LM", self.frozen_base_lm),
        ]


def param_breakdown(model: MBCModel) -> ParamBreakdown:
    """Count parameters by group from the module tree (works on the meta device)."""
    lora = encoder_lora = frozen = codebook = other = expander = 0
    for name, p in model.named_parameters():
        n = p.numel()
        if name.startswith("lm."):
            if not is_lora_parameter(name):
                frozen += n
            elif adapter_of(name) in ("amort", "question"):
                encoder_lora += n
            else:
                lora += n
        elif name.startswith("codebook."):
            codebook += n
        else:
            other += n
            expander += n if name.startswith("expander.") else 0
    return ParamBreakdown(other, lora, codebook, frozen, encoder_lora, expander)
