"""Where a model's weights live and in which precision.

Presets with ``base_bf16`` (``smollm2-135m``) keep the frozen base-LM weights in bf16 on a GPU
(half the memory, no per-call casts) and in fp32 on a CPU; everything trainable — LoRA
adapters, summary tokens, MLPs, codebook, aggregator, prefix expander — stays fp32 so that small
Adam updates are not rounded away. A model with bf16 frozen weights must run under bf16 autocast
(:func:`needs_autocast`).
"""

from __future__ import annotations

import torch

from learner.model.lora import is_lora_parameter
from learner.model.mbc import MBCModel


def frozen_base_parameters(model: MBCModel) -> list[torch.nn.Parameter]:
    return [p for n, p in model.named_parameters() if n.startswith("lm.") and not is_lora_parameter(n)]


def place_model(model: MBCModel, device: torch.device, bf16_ok: bool = True) -> MBCModel:
    """``model`` on ``device``; frozen base weights in bf16 there when the config asks for it on a GPU
    (and ``bf16_ok``: the caller runs the model under bf16 autocast)."""
    model = model.to(device)
    if model.config.base_bf16 and device.type == "cuda" and bf16_ok:
        cast_frozen_base(model, torch.bfloat16)
    return model


def cast_frozen_base(model: MBCModel, dtype: torch.dtype) -> None:
    """Cast the frozen base-LM weights (not the LoRA adapters) to ``dtype`` in place."""
    for p in frozen_base_parameters(model):
        p.data = p.data.to(dtype)


def needs_autocast(model: MBCModel) -> bool:
    """True when some frozen weights are bf16: every forward must then run under bf16 autocast."""
    return any(p.dtype == torch.bfloat16 for p in frozen_base_parameters(model))
