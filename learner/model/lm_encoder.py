"""Amortization network and question encoder built on the frozen base LM (``encoder="lm"``).

No pretrained T5 is installable here, so the ``smollm2-135m`` preset reads documents and questions
with SmolLM2 itself: the text's token embeddings, then K learnable *summary* embeddings appended
right after its last real token; the base LM runs causally with this network's own LoRA adapter
(:mod:`learner.model.adapters`); the last layer's hidden states at the K summary positions go
through the per-token MLPs of :class:`learner.model.positionwise.PositionwiseMLP` into K vectors of
size D. Same call signature as :class:`learner.model.amortization.PromptedT5`:
``(ids (N, T), mask (N, T)) -> (N, K, D)``.

The base LM is *not* registered as a submodule here (it belongs to :class:`learner.model.base_lm.BaseLM`,
whose module tree holds the adapters' weights too), so parameters, state dicts and checkpoints see
the frozen weights once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from learner.model.adapters import add_encoder_adapter, using_adapter
from learner.model.positionwise import PositionwiseMLP


class SummaryTokenEncoder(nn.Module):
    """A LoRA'd causal LM + K summary tokens: (N, T) token ids -> (N, K, out_dim)."""

    def __init__(
        self,
        lm: Any,  # a transformers causal LM shared with the answering side
        adapter: str,
        num_vectors: int,
        out_dim: int,
        lora_r: int,
        lora_alpha: int,
        mlp_hidden: int | None = None,
        *,
        targets: tuple[str, ...],  # the LoRA targets: the family's encoder_targets
    ) -> None:
        super().__init__()
        self._shared = (lm,)  # a tuple: not a registered submodule (see module docstring)
        self.adapter = adapter
        self.num_vectors = num_vectors
        hidden = lm.config.hidden_size
        emb = lm.get_input_embeddings().weight
        self.summary = nn.Parameter(torch.empty(1, num_vectors, hidden))  # (1, K, d)
        if self.summary.device.type != "meta":
            std = float(emb.detach().float().std()) if emb.device.type != "meta" else 0.02
            nn.init.normal_(self.summary, std=std)
        self.heads = PositionwiseMLP(num_vectors, hidden, out_dim, mlp_hidden)
        add_encoder_adapter(lm, adapter, lora_r, lora_alpha, targets)

    @property
    def lm(self) -> Any:
        return self._shared[0]

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) right-padded ids and mask -> (B, K, out_dim)."""
        b, k = input_ids.shape[0], self.num_vectors
        embeds = self.lm.get_input_embeddings()(input_ids)  # (B, T, d)
        summary = self.summary.to(embeds.dtype).expand(b, -1, -1)  # (B, K, d)
        x = torch.cat([embeds, summary], dim=1)  # (B, T+K, d): pads sit between text and summary
        mask = torch.cat([attention_mask, attention_mask.new_ones(b, k)], dim=1)  # (B, T+K)
        # the summary tokens take the positions right after each row's last real token
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T+K)
        with using_adapter(self.lm, self.adapter):
            out = self.lm.base_model(
                inputs_embeds=x, attention_mask=mask, position_ids=positions, use_cache=False
            )
        states = out.last_hidden_state[:, -k:]  # (B, K, d) after the final norm
        return self.heads(states)  # type: ignore[no-any-return]
