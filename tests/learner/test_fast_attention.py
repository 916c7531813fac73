"""The fused-kernel T5 attention (learner.model.fast_attention) computes what HF's eager attention does."""

from __future__ import annotations

import pytest
import torch

from learner.model.build import build_model
from learner.model.fast_attention import NAME, set_attention, use_fast_attention
from learner.model.presets import get_preset


@pytest.mark.parametrize("padded", [False, True])
def test_mbc_sdpa_equals_eager(padded: bool) -> None:
    torch.manual_seed(0)
    amortizer = build_model(get_preset("tiny").model, "scratch", None).amortizer.eval()
    # The tiny decoder reads K = 2 prompts: its self-attention exercises the causal branch too.
    assert amortizer.prompts.shape[1] > 1
    ids = torch.randint(3, 500, (4, 70))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 40:] = 0
        mask[3, 5:] = 0
    set_attention(amortizer, "eager")
    with torch.no_grad():
        reference = amortizer(ids, mask)  # (4, K, D)
    use_fast_attention(amortizer)
    assert amortizer.t5.encoder.config._attn_implementation == NAME
    with torch.no_grad():
        got = amortizer(ids, mask)
    assert got.shape == reference.shape
    assert (got - reference).abs().max().item() <= 1e-5
    # The padding must matter (the test would pass vacuously if masks were ignored everywhere).
    if padded:
        with torch.no_grad():
            unmasked = amortizer(ids, torch.ones_like(ids))
        assert (unmasked[1] - got[1]).abs().max().item() > 1e-3


def test_causal_branch_masks_future_prompts() -> None:
    """Changing the last prompt must not change the first decoder output (causal self-attention)."""
    torch.manual_seed(1)
    amortizer = build_model(get_preset("tiny").model, "scratch", None).amortizer.eval()
    use_fast_attention(amortizer)
    ids = torch.randint(3, 500, (2, 30))
    mask = torch.ones_like(ids)
    enc = amortizer.t5.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    prompts = amortizer.prompts.expand(2, -1, -1).clone()
    with torch.no_grad():
        a = amortizer.t5.decoder(
            inputs_embeds=prompts, encoder_hidden_states=enc, encoder_attention_mask=mask
        )
        prompts[:, -1] += 1.0
        b = amortizer.t5.decoder(
            inputs_embeds=prompts, encoder_hidden_states=enc, encoder_attention_mask=mask
        )
    first_a, first_b = a.last_hidden_state[:, 0], b.last_hidden_state[:, 0]
    assert (first_a - first_b).abs().max().item() <= 1e-6
    assert (a.last_hidden_state[:, -1] - b.last_hidden_state[:, -1]).abs().max().item() > 1e-3
