"""Several named peft LoRA adapters on one frozen base LM, one of them active per call.

The ``smollm2-135m`` preset runs three networks on the *same* frozen base weights: the answering
LM with KV-LoRA (adapter ``default``, peft's name, as in :mod:`learner.model.lora`), the
amortization network (``amort``) and the question encoder (``question``). One shared base costs
its weights once (SmolLM2-135M: 0.54 GB in fp32) instead of three times.

The resting state is ``default`` active everywhere (layers without a ``default`` adapter then
run their base layer alone, peft skips adapters a layer lacks); :func:`using_adapter` makes
another adapter the only active one for the duration of a call. It sets peft's active-adapter
list directly, because peft's own ``set_adapter`` also rewrites ``requires_grad`` of every
adapter, which would stop the inactive adapters from training.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

KV_ADAPTER = "default"


def tuner_layers(model: nn.Module) -> list[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def add_encoder_adapter(model: nn.Module, name: str, r: int, alpha: int, targets: tuple[str, ...]) -> None:
    """LoRA adapter ``name`` on the modules ``targets`` (the family's ``encoder_targets``,
    :mod:`learner.model.families`) of every layer of ``model``, in place."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets))
    with warnings.catch_warnings():  # several named adapters on one model are intended here
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, model, adapter_name=name)
    activate(model, KV_ADAPTER)


def activate(model: nn.Module, name: str) -> None:
    """Make ``name`` the only active adapter of every LoRA layer; ``requires_grad`` is left alone."""
    for layer in tuner_layers(model):
        layer._active_adapter = [name]


@contextmanager
def using_adapter(model: nn.Module, name: str) -> Iterator[None]:
    """Run ``model`` with adapter ``name`` alone; back to ``default`` afterwards."""
    activate(model, name)
    try:
        yield
    finally:
        activate(model, KV_ADAPTER)


def adapter_of(parameter_name: str) -> str | None:
    """The adapter a LoRA parameter belongs to (``...lora_A.<adapter>.weight``); None for others."""
    parts = parameter_name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("lora_A", "lora_B"):
            return parts[i + 1]
    return None
