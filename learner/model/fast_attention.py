"""T5 attention that reaches PyTorch's fused SDPA kernels, and an inference-speed amortizer.

Why (bench/results/amortizer_variants.json, H200): HF's ``sdpa`` path for T5 hands
``scaled_dot_product_attention`` the relative position bias as a *non-contiguous* view
(``permute`` of the bucket-embedding lookup) and, with padding, builds a (B, H, T, S) mask with
``torch.where`` in float32. Neither can go to a fused kernel, so SDPA falls back to its math path:
an fp32 (B, H, T, S) score tensor, an fp32 softmax and fp32 batched GEMMs per layer. At 1,024
tokens that path is ~45 % of the amortization forward.

``mbc_sdpa`` computes the same attention with one additive bias in the query's dtype whose last
dimension is contiguous (position bias + padding mask + causal mask where needed), which the
memory-efficient / cuDNN kernels accept. :func:`use_fast_attention` switches a model's T5 stacks
to it; :func:`inference_amortizer` additionally casts to bf16 and (optionally) compiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "mbc_sdpa"


def mbc_sdpa_attention(
    module: nn.Module,
    query: Tensor,  # (B, H, T, d)
    key: Tensor,  # (B, H, S, d)
    value: Tensor,  # (B, H, S, d)
    attention_mask: Tensor | None,  # (B, 1, T|1, S) bool (True = attend) or additive float, or None
    dropout: float = 0.0,
    scaling: float | None = None,
    position_bias: Tensor | None = None,  # (1|B, H, T, S), any strides
    **_: Any,
) -> tuple[Tensor, None]:
    """SDPA with T5's additive position bias: (B, T, H, d) output, no attention weights."""
    t, s = query.shape[2], key.shape[2]
    bias: Tensor | None = None if position_bias is None else position_bias.to(query.dtype)
    lowest = torch.finfo(query.dtype).min
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            add = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device)
            add = add.masked_fill(~attention_mask, lowest)
        else:
            add = attention_mask.to(query.dtype)
        bias = add if bias is None else bias + add
    elif getattr(module, "is_causal", False) and t > 1:
        # The mask function may leave causality to ``is_causal``; with a bias we must spell it out.
        causal = torch.ones(t, s, dtype=torch.bool, device=query.device).tril(s - t)  # (T, S)
        add = torch.zeros(t, s, dtype=query.dtype, device=query.device).masked_fill(~causal, lowest)
        bias = add if bias is None else bias + add
    if bias is not None and bias.stride(-1) != 1:
        bias = bias.contiguous()  # fused kernels need a contiguous last dimension
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=bias,
        dropout_p=dropout if module.training else 0.0,
        scale=scaling,
    )  # (B, H, T, d)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    AttentionInterface.register(NAME, mbc_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


_register()


def set_attention(module: nn.Module, impl: str) -> None:
    """Switch every HF configuration inside ``module`` to attention implementation ``impl`` (in place)."""
    for m in module.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation"):
            cfg._attn_implementation = impl


def use_fast_attention(module: nn.Module) -> None:
    """Switch every T5 configuration inside ``module`` to :func:`mbc_sdpa_attention` (in place)."""
    set_attention(module, NAME)


def inference_amortizer(
    amortizer: nn.Module, device: torch.device, bf16: bool, compile: bool
) -> Callable[[Tensor, Tensor], Tensor]:
    """The amortization network ready for fast no-grad inference on ``device``.

    ``bf16`` casts the weights once (no per-call autocast casts); ``compile`` wraps it in
    ``torch.compile`` (first batches of each new shape pay the compilation).
    Returns ``f(ids (N, T), mask (N, T)) -> (N, K, D)``.

    The fast path is T5-specific: any other amortizer (``encoder="lm"``: LoRA adapters on the shared
    base LM, :mod:`learner.model.lm_encoder`) is returned as it is, in eval mode, run under bf16
    autocast when ``bf16`` on a GPU (its base weights are shared with the answering LM and are not
    cast here).
    """
    if not hasattr(amortizer, "t5"):
        amortizer.eval()
        if not (bf16 and device.type == "cuda"):
            return amortizer

        def autocast_amortizer(ids: Tensor, mask: Tensor) -> Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return amortizer(ids, mask)  # type: ignore[no-any-return]

        return autocast_amortizer
    amortizer = amortizer.to(device).eval()
    use_fast_attention(amortizer)
    if bf16:
        amortizer = amortizer.to(torch.bfloat16)
    fn: Callable[[Tensor, Tensor], Tensor] = amortizer
    if compile:
        fn = torch.compile(amortizer, dynamic=False)
    return fn
