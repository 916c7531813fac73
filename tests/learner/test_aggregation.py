"""Count-based aggregation (docs/DESIGN.md §3a) equals attending over every stored vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.model.aggregator import CrossAttentionBlock
from learner.model.amortization import PromptedT5
from learner.model.memory import count_codes, memory_from_counts, memory_full, memory_naive


def random_bank(
    seed: int, n_docs: int, k: int, num_codes: int, versions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Heavy duplication: codes drawn from a small pool, documents spread over several versions."""
    rng = np.random.default_rng(seed)
    pool = rng.choice(num_codes, size=max(2, num_codes // 16), replace=False)
    codes = rng.choice(pool, size=(n_docs, k))
    codes[: n_docs // 3] = codes[0]  # a third of the bank is one repeated document
    vers = rng.integers(0, versions, size=n_docs)
    return codes, vers


def codebooks(versions: int, c: int, d: int, seed: int) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {v: torch.randn(c, d, generator=g) for v in range(versions)}


class Blocks(torch.nn.Module):
    def __init__(self, d: int, n: int) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([CrossAttentionBlock(d, 8, 12) for _ in range(n)])

    def forward(self, x: torch.Tensor, memory: object) -> torch.Tensor:
        for b in self.blocks:
            x = b(x, memory)
        return x


@pytest.mark.parametrize("seed", range(4))
def test_counts_equal_naive_on_duplicated_multi_version_banks(seed: int) -> None:
    torch.manual_seed(seed)
    d, k, c = 32, 6, 64
    codes, vers = random_bank(seed, n_docs=300, k=k, num_codes=c, versions=3)
    books = codebooks(3, c, d, seed)
    blocks = Blocks(d, 4).eval()
    queries = torch.randn(5, k, d)
    rows = count_codes(codes, vers)
    assert rows[:, 2].sum() == codes.size  # every stored code is counted once
    assert len(rows) < codes.size / 4  # heavy duplication
    with torch.no_grad():
        naive = blocks(queries, memory_naive(codes, vers, books))
        counted = blocks(queries, memory_from_counts(rows, books))
    assert naive.dtype == torch.float32
    assert float((naive - counted).abs().max()) <= 1e-5


def test_counts_path_does_not_depend_on_row_order() -> None:
    codes, vers = random_bank(7, 50, 4, 32, 2)
    books = codebooks(2, 32, 16, 7)
    rows = count_codes(codes, vers)
    block = CrossAttentionBlock(16, 8, 12).eval()
    q = torch.randn(3, 4, 16)
    shuffled = rows[np.random.default_rng(0).permutation(len(rows))]
    with torch.no_grad():
        a = block(q, memory_from_counts(rows, books))
        b = block(q, memory_from_counts(shuffled, books))
    assert float((a - b).abs().max()) <= 1e-6


def test_count_codes_values() -> None:
    codes = np.array([[1, 2, 2], [1, 1, 3]])
    vers = np.array([0, 5])
    assert count_codes(codes, vers).tolist() == [[0, 1, 1], [0, 2, 2], [5, 1, 2], [5, 3, 1]]


def test_naive_memory_uses_each_documents_own_codebook_version() -> None:
    books = {0: torch.zeros(4, 2), 1: torch.ones(4, 2)}
    mem = memory_naive(np.array([[0, 1], [2, 3]]), np.array([1, 0]), books)
    assert mem.vectors.tolist() == [[1, 1], [1, 1], [0, 0], [0, 0]]
    assert mem.log_weight is None


def test_unknown_codebook_version_is_an_error() -> None:
    with pytest.raises(KeyError, match="version 9"):
        memory_from_counts(np.array([[9, 0, 1]]), {0: torch.zeros(2, 2)})


def test_full_memory_flattens_documents() -> None:
    ctx = torch.arange(24.0).view(2, 3, 4)
    assert memory_full(ctx).vectors.shape == (6, 4)


def test_per_question_memory_matches_shared_memory() -> None:
    block = CrossAttentionBlock(16, 8, 12).eval()
    q = torch.randn(3, 4, 16)
    mem = torch.randn(10, 16)
    from learner.model.memory import Memory

    with torch.no_grad():
        shared = block(q, Memory(mem))
        per_q = block(q, Memory(mem.expand(3, -1, -1)))
    assert float((shared - per_q).abs().max()) <= 1e-6


def test_prompted_t5_returns_k_vectors_of_the_lm_width() -> None:
    from transformers import T5Model

    from learner.model.amortization import t5_config_from_spec
    from learner.model.config import T5Spec

    t5 = T5Model(t5_config_from_spec(T5Spec("x", 32, 64, 8, 1, 1, 4), 50, 0, 1))
    enc = PromptedT5(t5, 5, 48).eval()
    ids = torch.randint(2, 50, (3, 7))
    mask = torch.ones_like(ids)
    out = enc(ids, mask)
    assert out.shape == (3, 5, 48)
    # padding after the text does not change the output (the decoder's cross-attention is masked)
    padded = torch.cat([ids, torch.zeros(3, 4, dtype=torch.long)], 1)
    pmask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.long)], 1)
    with torch.no_grad():
        assert float((enc(padded, pmask) - out).abs().max()) <= 1e-5
