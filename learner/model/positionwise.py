"""One small MLP per position, evaluated as batched matrix products: the amortizer's K output heads
(docs/DESIGN.md §1.1) and the prefix expander's L·2·P token blocks (§1.5) are both this.

Position n: skip_n(x) + W2_n act(W1_n LN_n(x) + b1_n) + b2_n. The skip is the identity when
d_in == d_out, otherwise a linear map per position (``shared_skip=False``) or one linear map shared by
every position (``shared_skip=True``). Same parameters as N separate modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


class PositionwiseMLP(nn.Module):
    """(B, N, d_in) -> (B, N, d_out): N independent LayerNorm -> Linear -> act -> Linear blocks plus a skip."""

    def __init__(
        self,
        positions: int,
        d_in: int,
        d_out: int,
        hidden: int | None = None,
        activation: Callable[[Tensor], Tensor] = torch.tanh,
        shared_skip: bool = False,
        zero_output: bool = False,
    ) -> None:
        """``hidden`` defaults to d_out (the papers' MLP); ``zero_output``: the second layer and a shared
        skip start at zero, so the untrained module outputs b2 = 0 (the prefix expander's zero prefix)."""
        super().__init__()
        h = hidden or d_out
        self.positions, self.d_in, self.d_out, self.hidden = positions, d_in, d_out, h
        self.activation = activation
        self.ln_weight = nn.Parameter(torch.ones(positions, d_in))
        self.ln_bias = nn.Parameter(torch.zeros(positions, d_in))
        self.w1 = nn.Parameter(torch.empty(positions, d_in, h))
        self.b1 = nn.Parameter(torch.zeros(positions, h))
        self.w2 = nn.Parameter(torch.empty(positions, h, d_out))
        self.b2 = nn.Parameter(torch.zeros(positions, d_out))
        self.skip_w: nn.Parameter | None = None
        self.skip_b: nn.Parameter | None = None
        self.skip: nn.Linear | None = None
        if d_in != d_out and shared_skip:
            self.skip = nn.Linear(d_in, d_out, bias=False)
        elif d_in != d_out:
            self.skip_w = nn.Parameter(torch.empty(positions, d_in, d_out))
            self.skip_b = nn.Parameter(torch.zeros(positions, d_out))
        self.zero_output = zero_output
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights.
        for w, fan_in in ((self.w1, self.d_in), (self.w2, self.hidden), (self.skip_w, self.d_in)):
            if w is not None and w.device.type != "meta":
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(w, -bound, bound)
        if self.zero_output and self.w2.device.type != "meta":
            nn.init.zeros_(self.w2)
            if self.skip is not None:
                nn.init.zeros_(self.skip.weight)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, d_in) -> (B, N, d_out)."""
        h = nn.functional.layer_norm(x, (self.d_in,)) * self.ln_weight + self.ln_bias  # (B, N, d_in)
        h = self.activation(torch.einsum("bni,nio->bno", h, self.w1) + self.b1)  # (B, N, hidden)
        h = torch.einsum("bni,nio->bno", h, self.w2) + self.b2  # (B, N, d_out)
        if self.skip is not None:
            return h + self.skip(x)
        if self.skip_w is not None and self.skip_b is not None:
            return h + torch.einsum("bni,nio->bno", x, self.skip_w) + self.skip_b
        return h + x
