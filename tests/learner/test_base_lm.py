"""The base-LM wrapper: a prefix behaves exactly like cached past key/values, in forward and in
decoding with a KV cache; greedy and beam decoding agree with transformers where both exist."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from learner.decoding import greedy_search, group_beam_search
from learner.model.base_lm import BaseLM, prefix_positions
from learner.model.prefix import PrefixExpander, source_index
from tests.learner.helpers import tiny_gpt2, tiny_llama

BUILDERS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


def cached_prefix(model: Any, ids: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    out = model(input_ids=ids, use_cache=True)
    return tuple((layer.keys, layer.values) for layer in out.past_key_values.layers)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_prefix_equals_the_cache_of_the_tokens_it_replaces(arch: str) -> None:
    model = BUILDERS[arch]()
    lm = BaseLM(model, arch)  # type: ignore[arg-type]
    ids = torch.randint(2, 64, (3, 10))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        prefix = cached_prefix(model, ids[:, :3])
        out = lm(ids[:, 3:], torch.ones(3, 7, dtype=torch.long), prefix).logits
    assert float((out - full[:, 3:]).abs().max()) < 1e-5


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_left_padding_is_skipped_over(arch: str) -> None:
    model = BUILDERS[arch]()
    lm = BaseLM(model, arch)  # type: ignore[arg-type]
    prefix = tuple((k, v) for k, v in cached_prefix(model, torch.randint(2, 64, (1, 2))))
    short = torch.randint(2, 64, (1, 4))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        a = lm(short, torch.ones(1, 4, dtype=torch.long), prefix).logits[:, -1]
        b = lm(padded, mask, prefix).logits[:, -1]
    assert float((a - b).abs().max()) < 1e-5


def test_positions_start_after_the_prefix() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert prefix_positions(mask, 2).tolist() == [[2, 2, 2, 3, 4], [2, 3, 4, 5, 6]]


def _naive_greedy(lm: BaseLM, ids: torch.Tensor, prefix: Any, eos: int, steps: int) -> list[int]:
    """Greedy decoding without a KV cache: the whole sequence re-run at every step."""
    out: list[int] = []
    seq = ids
    for _ in range(steps):
        logits = lm(seq, torch.ones_like(seq), prefix).logits[0, -1]
        tok = int(logits.argmax())
        if tok == eos:
            break
        out.append(tok)
        seq = torch.cat([seq, torch.tensor([[tok]])], 1)
    return out


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cached_greedy_equals_uncached_greedy_with_a_prefix(arch: str) -> None:
    model = BUILDERS[arch]()
    lm = BaseLM(model, arch)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(1)
    prefix = tuple(
        (torch.randn(2, 4, 2, 8, generator=g), torch.randn(2, 4, 2, 8, generator=g))
        for _ in range(lm.num_layers)
    )
    ids = torch.randint(2, 64, (2, 5), generator=g)
    with torch.no_grad():
        got = greedy_search(lm, ids, torch.ones_like(ids), prefix, eos_id=1, max_new_tokens=8)
        for i in range(2):
            row_prefix = tuple((k[i : i + 1], v[i : i + 1]) for k, v in prefix)
            assert got[i] == _naive_greedy(lm, ids[i : i + 1], row_prefix, 1, 8)


def test_greedy_without_prefix_equals_transformers_generate() -> None:
    model = tiny_gpt2()
    lm = BaseLM(model, "gpt2")
    ids = torch.randint(2, 64, (3, 6))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # a left-padded row
    ids[0, :2] = 0
    with torch.no_grad():
        ours = greedy_search(lm, ids, mask, None, eos_id=1, max_new_tokens=6)
        ref = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=1,
        )
    for i in range(3):
        expected = [t for t in ref[i, 6:].tolist()]
        if 1 in expected:
            expected = expected[: expected.index(1)]
        assert ours[i] == expected


def test_one_group_beam_search_equals_transformers_beam_search() -> None:
    model = tiny_gpt2(vocab=64)
    lm = BaseLM(model, "gpt2")
    ids = torch.randint(2, 64, (2, 5), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = group_beam_search(
            lm, ids, torch.ones_like(ids), None, 1, 6, num_beams=4, num_groups=1, diversity_penalty=0.0
        )
        ref = model.generate(
            input_ids=ids,
            max_new_tokens=6,
            num_beams=4,
            do_sample=False,
            early_stopping=False,
            length_penalty=1.0,
            pad_token_id=0,
            eos_token_id=1,
        )
    for i in range(2):
        expected = [t for t in ref[i, 5:].tolist() if t not in (0, 1)]
        assert ours[i] == expected


def test_groups_without_diversity_penalty_equal_one_group() -> None:
    model = tiny_gpt2()
    lm = BaseLM(model, "gpt2")
    ids = torch.randint(2, 64, (2, 4))
    prefix = cached_prefix(model, torch.randint(2, 64, (2, 2)))
    with torch.no_grad():
        many = group_beam_search(lm, ids, torch.ones_like(ids), prefix, 1, 5, 12, 4, 0.0)
        one = group_beam_search(lm, ids, torch.ones_like(ids), prefix, 1, 5, 3, 1, 0.0)
        diverse = group_beam_search(lm, ids, torch.ones_like(ids), prefix, 1, 5, 12, 4, 10.0)
    assert many == one
    assert len(diverse) == 2


def test_source_index_spreads_k_vectors_over_n_tokens() -> None:
    assert source_index(3, 8).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert source_index(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert source_index(12, 8).tolist() == list(range(8))


def test_prefix_expander_shapes_and_layout() -> None:
    exp = PrefixExpander(num_vectors=3, dim=32, layers=2, heads=4, prefix_len=2, hidden=16)
    x = torch.randn(5, 3, 32)
    prefix = exp(x)
    assert len(prefix) == 2
    assert all(k.shape == v.shape == (5, 4, 2, 8) for k, v in prefix)
    tokens = exp.tokens(x)  # (B, N=8, D), token n = p*(2L) + j
    assert torch.equal(prefix[1][1][:, :, 0], tokens[:, 3].view(5, 4, 8))  # layer 1 value, position 0
    assert torch.equal(prefix[0][0][:, :, 1], tokens[:, 4].view(5, 4, 8))  # layer 0 key, position 1
