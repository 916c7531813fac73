"""Codebook: nearest-code assignment, straight-through gradient, loss formula, EMA usage, dead-code
reset, and the pure update functions the online worker reuses."""

from __future__ import annotations

import pytest
import torch

from learner.model.codebook import Codebook
from learner.model.codebook_math import (
    EmaKMeansState,
    assignment_stats,
    ema_kmeans_update,
    nearest_codes,
    perplexity,
    quantize,
    reset_dead_codes,
    update_usage,
)


def brute_force(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    d = ((z.double()[:, None, :] - e.double()[None, :, :]) ** 2).sum(-1)  # (N, C)
    return d.argmin(1)


@pytest.mark.parametrize("seed", range(5))
def test_assignment_equals_brute_force_nearest_neighbour(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(512, 48, generator=g)
    z = torch.randn(300, 48, generator=g) * 1.5
    near = e[torch.randint(0, 512, (100,), generator=g)] + 1e-3 * torch.randn(100, 48, generator=g)
    z = torch.cat([z, near])  # some rows sit right next to a code
    assert torch.equal(nearest_codes(z, e), brute_force(z, e))


def test_assignment_breaks_exact_ties_towards_the_lower_index() -> None:
    e = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # equidistant from all / from codes 0 and 2
    assert nearest_codes(z, e).tolist() == [0, 0]


def test_assignment_is_float32_under_bf16_autocast() -> None:
    e = torch.randn(64, 16)
    z = torch.randn(50, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes = nearest_codes(z.bfloat16(), e)
    assert torch.equal(codes, brute_force(z.bfloat16().float(), e))


def test_straight_through_gradient_is_the_identity() -> None:
    book = Codebook(32, 8).eval()
    z = torch.randn(4, 3, 8, requires_grad=True)
    w = torch.randn(4, 3, 8)
    out = book(z)
    (out.quantized * w).sum().backward()
    assert z.grad is not None
    assert torch.equal(z.grad, w)
    # and the forward value is exactly the chosen code vectors
    assert torch.equal(out.quantized.detach(), book.vectors.detach()[out.codes])


def test_loss_matches_the_formula_and_its_gradients() -> None:
    beta = 0.25
    book = Codebook(16, 6, beta=beta).eval()
    z = torch.randn(10, 6, requires_grad=True)
    out = book(z)
    e = book.vectors[out.codes]
    n = z.numel()
    expected = ((z.detach() - e) ** 2).sum() / n + beta * ((z - e.detach()) ** 2).sum() / n
    assert torch.allclose(out.loss, expected, rtol=0, atol=1e-7)
    out.loss.backward()
    assert z.grad is not None and book.vectors.grad is not None
    # d/dz = 2β(z - e)/n ; d/de_c = Σ_{i→c} 2(e_c - z_i)/n
    assert torch.allclose(z.grad, 2 * beta * (z.detach() - e.detach()) / n, atol=1e-7)
    expected_e = torch.zeros_like(book.vectors)
    expected_e.index_add_(0, out.codes, 2 * (e.detach() - z.detach()) / n)
    assert torch.allclose(book.vectors.grad, expected_e, atol=1e-7)


def test_init_is_uniform_in_plus_minus_one_over_c() -> None:
    book = Codebook(512, 32)
    assert float(book.vectors.detach().abs().max()) <= 1 / 512
    assert int(book.version) == 0


def test_training_forward_updates_usage_as_an_ema() -> None:
    book = Codebook(8, 4, usage_decay=0.9, dead_threshold=-1.0)  # no resets
    book.usage.fill_(0.5)
    z = book.vectors.detach()[torch.tensor([1, 1, 3])] + 0.0
    book.train()(z)
    expected = torch.full((8,), 0.45)
    expected[1] += 0.1 * 2
    expected[3] += 0.1 * 1
    assert torch.allclose(book.usage, expected)


def test_dead_code_reset_replaces_exactly_the_codes_under_threshold() -> None:
    torch.manual_seed(3)
    book = Codebook(10, 4, usage_decay=0.99, dead_threshold=1e-4)
    usage = torch.tensor([1.0, 0.0, 0.5, 0.0, 2.0, 0.0, 0.3, 1e-5, 0.8, 0.2])
    book.usage.copy_(usage)
    with torch.no_grad():
        book.vectors[0] = 100.0  # the whole batch is assigned to code 0
    before = book.vectors.detach().clone()
    batch = 100.0 + torch.randn(6, 4)
    codes = nearest_codes(batch, before)
    book.train()(batch)
    hist = torch.bincount(codes, minlength=10).float()
    ema = usage * 0.99 + hist * 0.01
    dead = torch.nonzero(ema < 1e-4).squeeze(1)
    assert dead.tolist() == [1, 3, 5, 7]
    changed = torch.nonzero((book.vectors.detach() != before).any(1)).squeeze(1)
    assert changed.tolist() == dead.tolist()  # exactly the dead codes, nothing else
    for c in dead.tolist():  # each one now holds a batch vector
        assert any(torch.equal(book.vectors.detach()[c], row) for row in batch)
    live = torch.ones(10, dtype=torch.bool)
    live[dead] = False
    assert torch.equal(book.usage[live], ema[live])
    assert torch.allclose(book.usage[dead], ema.mean().expand(4))


def test_dead_code_reset_is_limited_by_batch_size_and_keeps_inputs() -> None:
    vectors, usage = torch.randn(6, 3), torch.zeros(6)
    batch = torch.randn(2, 3)
    v0, u0 = vectors.clone(), usage.clone()
    new_v, _, replaced = reset_dead_codes(vectors, usage, batch, 1e-4)
    assert replaced.tolist() == [0, 1]  # the first two dead codes, in index order
    assert torch.equal(new_v[2:], v0[2:])
    assert torch.equal(vectors, v0) and torch.equal(usage, u0)  # inputs untouched


def test_eval_mode_never_changes_the_codebook() -> None:
    book = Codebook(8, 4).eval()
    before = book.vectors.detach().clone()
    book(torch.randn(20, 4))
    assert torch.equal(book.vectors.detach(), before)
    assert torch.equal(book.usage, torch.zeros(8))


def test_update_usage_returns_a_new_tensor() -> None:
    usage = torch.ones(4)
    out = update_usage(usage, torch.tensor([0.0, 1.0, 2.0, 0.0]), 0.5)
    assert out.tolist() == [0.5, 1.0, 1.5, 0.5]
    assert usage.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_ema_kmeans_update_produces_a_new_version_without_touching_the_old() -> None:
    vectors = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    state = EmaKMeansState(vectors.clone(), torch.ones(2), vectors.clone())  # unit weight per code
    old = state.vectors.clone()
    batch = torch.tensor([[1.0, 1.0], [3.0, 1.0], [10.0, 12.0]])
    counts, sums = assignment_stats(batch, nearest_codes(batch, state.vectors), 2)
    new = ema_kmeans_update(state, counts, sums, decay=0.5, eps=0.0)
    assert torch.equal(state.vectors, old)  # the version in use is unchanged
    # code 0: size 0.5*1 + 0.5*2 = 1.5, sum 0.5*0 + 0.5*(4, 2) = (2, 1) -> (4/3, 2/3)
    # code 1: size 0.5 + 0.5 = 1, sum 0.5*(10,10) + 0.5*(10,12) = (10, 11)
    # smoothing with eps = 0 keeps sizes; total 2.5
    assert torch.allclose(new.vectors, torch.tensor([[4 / 3, 2 / 3], [10.0, 11.0]]))
    assert torch.allclose(new.cluster_size, torch.tensor([1.5, 1.0]))


def test_ema_kmeans_update_over_several_batches_matches_formula() -> None:
    """The worker folds ``batches`` batches at once; the rule treats them as equal mini-batches."""
    vectors = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    usage = torch.tensor([2.0, 0.0, 1.0])
    counts = torch.tensor([4.0, 2.0, 0.0])
    sums = torch.tensor([[4.0, 8.0], [6.0, 2.0], [0.0, 0.0]])
    state = EmaKMeansState(vectors, usage, vectors * usage[:, None])
    new = ema_kmeans_update(state, counts, sums, decay=0.5, batches=2, eps=0.0)
    g = 0.25  # 0.5 ** 2
    expect_u = usage * g + counts / 2 * (1 - g)
    assert torch.allclose(new.cluster_size, expect_u)
    # code 0: (g*N*e + (1-g)*s/b) / N' ; code 1 had no usage: becomes the mean of what it got
    assert torch.allclose(new.vectors[0], (g * 2.0 * vectors[0] + (1 - g) * sums[0] / 2) / expect_u[0])
    assert torch.allclose(new.vectors[1], sums[1] / counts[1])
    assert torch.equal(new.vectors[2], vectors[2])  # nothing assigned: unchanged, never collapsed to zero
    assert torch.equal(vectors, torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))  # inputs untouched
    # the default smoothing moves a hit code by a relative ~C·eps / ΣN only
    smoothed = ema_kmeans_update(state, counts, sums, decay=0.5, batches=2)
    assert torch.allclose(smoothed.vectors, new.vectors, rtol=1e-4)
    assert torch.equal(smoothed.vectors[2], vectors[2])


def test_perplexity() -> None:
    assert float(perplexity(torch.tensor([5.0, 5.0, 0.0, 0.0]))) == pytest.approx(2.0)
    assert float(perplexity(torch.ones(8))) == pytest.approx(8.0)
    assert float(perplexity(torch.zeros(4))) == 0.0


def test_ema_codebook_tracks_the_mean_of_assigned_vectors() -> None:
    book = Codebook(4, 2, beta=0.25, usage_decay=0.5, dead_threshold=-1.0, update="ema")
    assert not book.vectors.requires_grad
    book.set_codes(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]), torch.ones(4))
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0], [9.0, 0.0]], requires_grad=True)
    out = book.train()(z)
    # commitment term only: beta * mean((z - e)^2)
    e = torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0]])
    assert torch.allclose(out.loss, 0.25 * ((z.detach() - e) ** 2).mean())
    # code 0: size 0.5*1 + 0.5*2 = 1.5, sum 0.5*(0,0) + 0.5*(4,2) = (2,1) -> about (4/3, 2/3) (Laplace smoothing)
    assert torch.allclose(book.vectors[0], torch.tensor([4 / 3, 2 / 3]), atol=1e-4)
    assert torch.allclose(book.vectors[1], torch.tensor([9.5, 0.0]), atol=1e-4)
    assert torch.allclose(book.vectors[2], torch.tensor([0.0, 10.0]), atol=1e-4)  # unassigned: unchanged


def test_quantize_returns_nearest_codes_and_their_squared_errors() -> None:
    torch.manual_seed(3)
    vectors = torch.randn(16, 4)
    z = torch.randn(3, 5, 4)  # (N, K, D)
    codes, err = quantize(z, vectors)
    assert codes.shape == (3, 5) and err.shape == (3, 5)
    assert torch.equal(codes.reshape(-1), brute_force(z.reshape(-1, 4), vectors))
    assert torch.allclose(err, ((z - vectors[codes]) ** 2).sum(-1))
