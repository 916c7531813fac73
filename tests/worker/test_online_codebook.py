"""Online codebook maintenance: the EMA step's math, versions never modified, one linear history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learner.worker.online_codebook import OnlineCodebook
from memory_store.store import MemoryStore


def _store(tmp_path: Path) -> MemoryStore:
    return MemoryStore(f"sqlite:///{tmp_path / 'm.db'}", auto_migrate=True, index_dir=tmp_path / "faiss")


def test_ema_versions_move_towards_stream_and_never_change(tmp_path: Path) -> None:
    torch.manual_seed(0)
    store = _store(tmp_path)
    initial = torch.randn(16, 4)
    cb = OnlineCodebook(store, torch.device("cpu"), mode="ema", decay=0.5, publish_every_docs=10)
    root = cb.bootstrap(initial)
    root_blob = store.codebook_blob(root)
    shifted = lambda n: torch.randn(n, 3, 4) * 0.1 + 3.0  # noqa: E731 - the stream drifted away
    errors = []
    for _ in range(6):
        z = shifted(10)
        codes, err = cb.quantize(z)
        errors.append(float(err.mean()))
        cb.observe(z, codes, err)
        assert cb.due()
        cb.publish()
    versions = store.codebook_versions()
    assert [v.parent_version for v in versions] == [None, *[v.version for v in versions[:-1]]]
    assert store.codebook_blob(root) == root_blob  # the root's vectors are exactly as first stored
    assert errors[-1] < errors[0] / 4  # the codebook followed the stream
    assert versions[1].health.extra["observed_docs"] == 10
    assert store.codebook_info(root).health.perplexity is not None


def test_two_workers_share_one_linear_history(tmp_path: Path) -> None:
    torch.manual_seed(1)
    store = _store(tmp_path)
    initial = torch.randn(8, 4)
    a = OnlineCodebook(store, torch.device("cpu"), mode="ema", publish_every_docs=5, follow_every_s=0.0)
    b = OnlineCodebook(store, torch.device("cpu"), mode="ema", publish_every_docs=5, follow_every_s=0.0)
    assert a.bootstrap(initial) == b.bootstrap(initial + 1)  # the second start finds the root
    for i in range(8):
        for cb in (a, b) if i % 2 else (b, a):
            z = torch.randn(5, 2, 4)
            codes, err = cb.quantize(z)
            cb.observe(z, codes, err)
            cb.publish()  # b publishes on top of a's version and vice versa: rebasing, not forking
    versions = store.codebook_versions()
    assert len(versions) == 1 + 16
    assert [v.parent_version for v in versions[1:]] == [v.version for v in versions[:-1]]
    assert sorted(a.published + b.published) == [v.version for v in versions[1:]]
    assert a.follow(force=True) == b.follow(force=True) == versions[-1].version


def test_frozen_mode_only_records_health(tmp_path: Path) -> None:
    store = _store(tmp_path)
    cb = OnlineCodebook(store, torch.device("cpu"), mode="frozen", publish_every_docs=4)
    root = cb.bootstrap(torch.eye(4))
    z = torch.eye(4)[None].repeat(4, 1, 1)  # (4, 4, 4): every code used once per document
    codes, err = cb.quantize(z)
    assert codes.tolist() == [[0, 1, 2, 3]] * 4 and float(err.max()) == 0.0
    cb.observe(z, codes, err)
    assert cb.publish() is None
    assert [v.version for v in store.codebook_versions()] == [root]
    health = store.codebook_info(root).health
    assert health.perplexity == pytest.approx(4.0)
    assert health.extra["mean_quantization_error"] == 0.0
    assert np.allclose(store.get_codebook(root).vectors, np.eye(4))


def test_health_keeps_resets_and_is_recorded_when_the_worker_stops(tmp_path: Path) -> None:
    torch.manual_seed(2)
    store = _store(tmp_path)
    cb = OnlineCodebook(
        store, torch.device("cpu"), mode="ema", decay=0.5, dead_threshold=0.5, publish_every_docs=5
    )
    cb.bootstrap(torch.randn(16, 4), torch.zeros(16))  # every code unused so far: dead

    def observe() -> None:
        z = torch.randn(5, 2, 4)
        codes, err = cb.quantize(z)
        cb.observe(z, codes, err)

    observe()
    v2 = cb.publish()
    assert v2 is not None
    resets = store.codebook_info(v2).health.resets
    assert resets is not None and resets > 0
    observe()
    v3 = cb.publish()  # replaces v2's health with what was measured on it: its resets stay
    assert v3 is not None
    h2 = store.codebook_info(v2).health
    assert h2.resets == resets and h2.perplexity is not None and h2.extra["origin"] == "ema"
    v3_resets = store.codebook_info(v3).health.resets
    assert store.codebook_info(v3).health.perplexity is None  # nothing measured on v3 yet
    observe()
    assert cb.record_health()  # what the worker does when it stops
    h3 = store.codebook_info(v3).health
    assert h3.perplexity is not None and h3.extra["mean_quantization_error"] is not None
    assert h3.resets == v3_resets and h3.extra["observed_docs"] == 5
    assert [v.version for v in store.codebook_versions()][-1] == v3  # nothing new published
    idle = OnlineCodebook(store, torch.device("cpu"), mode="ema")
    idle.bootstrap(torch.randn(16, 4))
    assert not idle.record_health()  # nothing observed: nothing written


def test_fast_encoder_matches_model_path(tiny_checkpoint: Path) -> None:
    """`precision=auto` (fused attention, fp32 on CPU) encodes as the model's own forward does."""
    from learner.inference.encode import DocumentEncoder

    texts = ["the market rose after the central bank held rates", "oil prices fell", "a strike at the port"]
    slow = DocumentEncoder.load(tiny_checkpoint, "cpu", precision="autocast")
    fast = DocumentEncoder.load(tiny_checkpoint, "cpu", precision="auto")
    assert slow.fast is None and fast.fast is not None
    a, b = slow.encode(texts), fast.encode(texts)  # (3, K, D)
    assert a.shape == b.shape == (3, slow.k, slow.dim)
    assert (a - b).abs().max().item() <= 1e-5


def test_a_batch_quantized_against_an_older_version_is_observed_against_the_current_one(
    tmp_path: Path,
) -> None:
    """The pipelined worker quantizes batch n + 1 before batch n's maintenance may publish: the
    statistics of a batch whose version is no longer current describe the current version's codes."""
    torch.manual_seed(0)
    store = _store(tmp_path)
    cb = OnlineCodebook(store, torch.device("cpu"), mode="ema", decay=0.5, publish_every_docs=4)
    root = cb.bootstrap(torch.randn(8, 4))
    z = torch.randn(4, 3, 4) + 2.0
    version, codes, err = cb.quantize_current(z)  # (4, 3), (4, 3)
    assert version == root
    cb.observe(z, codes, err, version)
    assert cb.publish() is not None and cb.version != root
    before = cb.obs.counts.clone() if cb.obs is not None else None
    cb.observe(z, codes, err, version)  # quantized against root; root is no longer in use
    assert cb.obs is not None and before is not None
    fresh, _ = cb.quantize(z)
    expected = torch.bincount(fresh.reshape(-1), minlength=8).float()
    assert torch.equal(cb.obs.counts - before, expected)
