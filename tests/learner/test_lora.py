"""KV-LoRA: only the K and V projections change, base weights stay frozen, and only LoRA,
amortization, codebook and aggregation parameters train."""

from __future__ import annotations

import torch

from learner.model.build import build_model
from learner.model.lora import FusedKVLoRA, apply_kv_lora, freeze_all_but_lora, lora_disabled
from tests.learner.helpers import random_batch, small_model_config, tiny_gpt2, tiny_llama


def _nonzero_lora(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)


def test_gpt2_fused_c_attn_changes_k_and_v_slices_only() -> None:
    lm = tiny_gpt2(layers=3, hidden=32)
    base_out = {}
    x = torch.randn(2, 5, 32)
    for i, block in enumerate(lm.transformer.h):
        base_out[i] = block.attn.c_attn(x)
    names = apply_kv_lora(lm, "gpt2", r=4, alpha=8, dropout=0.0, last_n=2)
    assert names == ["transformer.h.1.attn.c_attn", "transformer.h.2.attn.c_attn"]
    assert not isinstance(lm.transformer.h[0].attn.c_attn, FusedKVLoRA)
    _nonzero_lora(lm)
    for i, block in enumerate(lm.transformer.h):
        out = block.attn.c_attn(x)
        q, k, v = out.split(32, dim=-1)
        bq, bk, bv = base_out[i].split(32, dim=-1)
        assert torch.equal(q, bq)  # the query projection's output is unchanged, bit for bit
        if i == 0:
            assert torch.equal(out, base_out[0])
        else:
            assert not torch.allclose(k, bk) and not torch.allclose(v, bv)


def test_gpt2_lora_starts_as_a_no_op_and_can_be_disabled() -> None:
    lm = tiny_gpt2()
    ids = torch.randint(2, 64, (2, 6))
    before = lm(input_ids=ids).logits
    apply_kv_lora(lm, "gpt2", 4, 8, 0.0, 3)
    assert torch.equal(lm(input_ids=ids).logits, before)
    _nonzero_lora(lm)
    assert not torch.allclose(lm(input_ids=ids).logits, before)
    with lora_disabled(lm):
        assert torch.equal(lm(input_ids=ids).logits, before)
    assert not torch.allclose(lm(input_ids=ids).logits, before)


def test_llama_lora_touches_k_proj_and_v_proj_of_the_last_layers_only() -> None:
    lm = tiny_llama(layers=3)
    x = torch.randn(2, 5, 32)
    attn = [layer.self_attn for layer in lm.model.layers]
    base = [(a.q_proj(x), a.k_proj(x), a.v_proj(x), a.o_proj(x)) for a in attn]
    names = apply_kv_lora(lm, "llama", r=4, alpha=8, dropout=0.0, last_n=2)
    assert names == [f"model.layers.{i}.self_attn.{p}" for i in (1, 2) for p in ("k_proj", "v_proj")]
    _nonzero_lora(lm)
    for i, a in enumerate(attn):
        q, k, v, o = a.q_proj(x), a.k_proj(x), a.v_proj(x), a.o_proj(x)
        assert torch.equal(q, base[i][0]) and torch.equal(o, base[i][3])
        if i == 0:
            assert torch.equal(k, base[i][1]) and torch.equal(v, base[i][2])
        else:
            assert not torch.allclose(k, base[i][1]) and not torch.allclose(v, base[i][2])
    with lora_disabled(lm):
        assert torch.equal(attn[2].k_proj(x), base[2][1])
    freeze_all_but_lora(lm)
    trainable = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_only_lora_amortization_codebook_and_aggregation_train() -> None:
    for arch in ("gpt2", "llama"):
        model = build_model(small_model_config(arch), "scratch", None)
        groups = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
        assert groups == {"amortizer", "codebook", "aggregator", "expander", "lm"}
        lm_trainable = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("lm.")]
        assert lm_trainable and all("lora_A" in n or "lora_B" in n for n in lm_trainable)
        frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
        assert all(n.startswith("lm.") for n in frozen)
        trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        model.train()
        for seed in range(2):  # the second step moves lora_A too (lora_B is no longer zero)
            model(random_batch(4, seed=seed)).loss.backward()
            opt.step()
            opt.zero_grad()
        params = dict(model.named_parameters())
        for n, before in frozen.items():
            assert torch.equal(params[n].detach(), before), n
        moved = {n for n, before in trainable.items() if not torch.equal(params[n].detach(), before)}
        for prefix in ("amortizer.", "aggregator.", "expander.", "codebook."):
            assert any(n.startswith(prefix) for n in moved), prefix
        assert any("lora_A" in n for n in moved) and any("lora_B" in n for n in moved)
