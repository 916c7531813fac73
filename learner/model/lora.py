"""KV-LoRA (docs/DESIGN.md §1.6): low-rank updates on the key and value projections only, last N layers.

* Llama-style models (separate ``k_proj`` / ``v_proj``): peft's LoRA injected in place on those
  two modules of the last N layers.
* GPT-2 (one fused ``c_attn`` producing [Q | K | V]): :class:`FusedKVLoRA` wraps ``c_attn`` and adds
  B·A·x only to the K and V column slices; the query slice is the base output, untouched.

Both start as no-ops (B = 0) and leave every base weight frozen.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from learner.errors import ConfigValueError

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


def _gpt2_blocks(model: Any) -> nn.ModuleList:
    return model.transformer.h  # type: ignore[no-any-return]


def apply_kv_lora(model: Any, arch: str, r: int, alpha: int, dropout: float, last_n: int) -> list[str]:
    """Add KV-LoRA to the last ``last_n`` attention layers of ``model`` in place; return the wrapped names."""
    if last_n == 0:
        return []
    if arch == "gpt2":
        blocks = _gpt2_blocks(model)
        hidden = model.config.n_embd
        names = []
        first = len(blocks) - last_n
        for i in range(first, len(blocks)):
            attn: Any = blocks[i].attn
            attn.c_attn = FusedKVLoRA(attn.c_attn, hidden, r, alpha, dropout)
            names.append(f"transformer.h.{i}.attn.c_attn")
        return names
    if arch == "llama":
        from peft import LoraConfig, inject_adapter_in_model

        layers = model.config.num_hidden_layers
        chosen = list(range(layers - last_n, layers))
        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=["k_proj", "v_proj"],
            layers_to_transform=chosen,
            layers_pattern="layers",
            bias="none",
        )
        with warnings.catch_warnings():  # a second adapter next to encoder="lm"'s is intended
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(config, model)
        return [f"model.layers.{i}.self_attn.{p}" for i in chosen for p in ("k_proj", "v_proj")]
    raise ConfigValueError(f"KV-LoRA is not implemented for architecture {arch!r}")


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
