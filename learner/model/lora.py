"""KV-LoRA (docs/DESIGN.md §1.6): low-rank updates on the key and value projections only, last N layers.

Where the projections are is the family's row in :mod:`learner.model.families`:

* ``peft`` families (separate key and value projections, Llama's ``k_proj`` / ``v_proj``): peft's
  LoRA injected in place on those two modules of the last N layers.
* ``fused`` families (one QKV projection producing [Q | K | V], GPT-2's ``c_attn``):
  :class:`FusedKVLoRA` wraps it and adds B·A·x only to the K and V column slices; the query slice
  is the base output, untouched.

Both start as no-ops (B = 0) and leave every base weight frozen.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from operator import attrgetter
from typing import Any

import torch
from torch import Tensor, nn

from learner.model.families import family

LORA_MARKERS = ("lora_A", "lora_B")


class FusedKVLoRA(nn.Module):
    """LoRA on the K and V slices of a fused QKV projection (GPT-2 ``Conv1D`` c_attn)."""

    def __init__(self, base: nn.Module, hidden: int, r: int, alpha: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.base, self.hidden, self.scaling = base, hidden, alpha / r
        self.enabled = True
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(torch.empty(r, hidden))  # (r, D)
        self.lora_B = nn.Parameter(torch.zeros(2 * hidden, r))  # (2D, r): K rows then V rows
        if self.lora_A.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        for p in base.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)  # (B, T, 3D) = [Q | K | V]
        if not self.enabled:
            return out  # type: ignore[no-any-return]
        q, kv = out.split([self.hidden, 2 * self.hidden], dim=-1)  # (B, T, D), (B, T, 2D)
        delta = (self.dropout(x) @ self.lora_A.t().to(x.dtype)) @ self.lora_B.t().to(x.dtype)  # (B, T, 2D)
        return torch.cat([q, kv + delta * self.scaling], dim=-1)


def apply_kv_lora(model: Any, arch: str, r: int, alpha: int, dropout: float, last_n: int) -> list[str]:
    """Add KV-LoRA to the last ``last_n`` attention layers of ``model`` (of family ``arch``, a row of
    :mod:`learner.model.families`) in place; return the wrapped names."""
    fam = family(arch)
    if last_n == 0:
        return []
    layers: nn.ModuleList = attrgetter(fam.layers_path)(model)
    chosen = list(range(len(layers) - last_n, len(layers)))
    if fam.kv_lora == "fused":
        (target,) = fam.kv_targets
        hidden = model.config.hidden_size
        for i in chosen:
            attn: Any = getattr(layers[i], fam.attention)
            setattr(attn, target, FusedKVLoRA(getattr(attn, target), hidden, r, alpha, dropout))
        return fam.kv_module_names(chosen)
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(fam.kv_targets),
        layers_to_transform=chosen,
        layers_pattern=fam.layers_pattern,
        bias="none",
    )
    with warnings.catch_warnings():  # a second adapter next to encoder="lm"'s is intended
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, model)
    return fam.kv_module_names(chosen)


def is_lora_parameter(name: str) -> bool:
    return any(marker in name for marker in LORA_MARKERS)


def freeze_all_but_lora(model: nn.Module) -> None:
    """requires_grad only for LoRA parameters of ``model``."""
    for name, p in model.named_parameters():
        p.requires_grad_(is_lora_parameter(name))


@contextmanager
def lora_disabled(model: nn.Module) -> Iterator[None]:
    """Run ``model`` as the plain base LM: every KV-LoRA update switched off inside the block."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    fused = [m for m in model.modules() if isinstance(m, FusedKVLoRA)]
    tuners = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for m in fused:
        m.enabled = False
    for t in tuners:
        t.enable_adapters(False)
    try:
        yield
    finally:
        for m in fused:
            m.enabled = True
        for t in tuners:
            t.enable_adapters(True)
        for name, p in model.named_parameters():
            p.requires_grad_(grads[name])
