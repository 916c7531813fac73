"""The worker with a product-quantized codebook (G groups): it publishes versions that know G and
stores code format 2, a code's offset within its group; a store whose root version predates G
(G = 1) keeps working, and the EMA child it publishes there packs by G."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from learner.errors import CheckpointError
from learner.model.code_space import CodeSpace
from learner.model.codebook import Codebook
from learner.worker.batch import RawMessage, Tokenized, encode
from learner.worker.online_codebook import OnlineCodebook
from memory_store.codec import packed_size
from memory_store.store import MemoryStore
from pipeline.events import make_document

G, C_GROUP, VECTORS, D = 4, 8, 3, 6
C, K = G * C_GROUP, VECTORS * G  # 32 codes in 4 groups of 8 (3 bits each); 12 codes per document


class GroupedEncoder:
    """A deterministic stand-in for the text encoder: text -> (K, D) context vectors."""

    device = torch.device("cpu")

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        ids = torch.tensor([[sum(t.encode()) % 997, len(t)] for t in texts])  # (N, 2)
        return ids, torch.ones_like(ids)

    def encode_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        g = torch.Generator().manual_seed(int(ids.sum()))
        return torch.randn(ids.shape[0], VECTORS, D, generator=g)  # (N, K, D)

    def encode(self, texts: Sequence[str]) -> Tensor:
        return self.encode_tokens(*self.tokenize(texts))


def grouped_book() -> Codebook:
    torch.manual_seed(0)
    space = CodeSpace(dim=D, slots=VECTORS, groups=G, code_dim=2)
    book = Codebook(C_GROUP, D, update="ema", space=space)
    book.init_from_context(torch.randn(64, VECTORS, D), per_step=64, seed=0)
    return book


def batch(n: int, start: int = 0) -> Tokenized:
    ts = datetime(2024, 3, 1, tzinfo=UTC)
    good = []
    for i in range(start, start + n):
        d = make_document(source="s", ref=f"r{i}", text=f"document number {i}", published_at=ts)
        good.append((RawMessage("docs.clean", 0, i, None, d.to_json()), d))
    texts = [d.text for _, d in good]
    return Tokenized(f"b{start}", good, [], [], GroupedEncoder().tokenize(texts), 0.0)


def test_the_worker_stores_format_2_codes_of_a_grouped_codebook(tmp_path: Path) -> None:
    book = grouped_book()
    with MemoryStore(f"sqlite:///{tmp_path / 'm.db'}", auto_migrate=True, index_dir=tmp_path) as store:
        cb = OnlineCodebook(store, torch.device("cpu"), mode="ema", publish_every_docs=8, book=book)
        root = cb.bootstrap(book.vectors.detach())
        assert store.codebook_info(root).groups == G
        prepared = encode(batch(8), GroupedEncoder(), cb)  # type: ignore[arg-type]
        assert prepared.codes is not None and prepared.codes.shape == (8, K)
        assert {(r.code_format, len(r.codes)) for r in prepared.records} == {(2, packed_size(K, C, groups=G))}
        assert packed_size(K, C, groups=G) == 5 < packed_size(K, C, code_format=1) == 8  # 3 bits, not 5
        store.write_batch(prepared.records)
        codes, _ = store.slice_codes()
        order = np.argsort([r.id for r in prepared.records])
        assert np.array_equal(codes, prepared.codes.numpy()[order])
        assert ((codes // C_GROUP) == np.arange(K) % G).all()  # slot j's code is of group j mod G
        cb.observe(prepared.z, prepared.codes, prepared.sq_error, root)  # type: ignore[arg-type]
        child = cb.publish()
        assert child is not None and store.codebook_info(child).groups == G


def test_a_root_version_without_groups_keeps_working(tmp_path: Path) -> None:
    """A store migrated from before G: its root says G = 1 (format 2 = global indices, 8 bytes);
    the worker's EMA child says G = 4 and its documents pack in 3 bits per code."""
    book = grouped_book()
    with MemoryStore(f"sqlite:///{tmp_path / 'm.db'}", auto_migrate=True, index_dir=tmp_path) as store:
        root = store.add_codebook_version(book.vectors.detach().numpy())  # groups = 1
        cb = OnlineCodebook(store, torch.device("cpu"), mode="ema", publish_every_docs=8, book=book)
        assert cb.bootstrap(book.vectors.detach()) == root
        first = encode(batch(8), GroupedEncoder(), cb)  # type: ignore[arg-type]
        assert {len(r.codes) for r in first.records} == {8}
        store.write_batch(first.records)
        cb.observe(first.z, first.codes, first.sq_error, root)  # type: ignore[arg-type]
        child = cb.publish()
        assert child is not None and store.codebook_info(child).groups == G
        second = encode(batch(8, start=8), GroupedEncoder(), cb)  # type: ignore[arg-type]
        assert {(r.codebook_version, len(r.codes)) for r in second.records} == {(child, 5)}
        store.write_batch(second.records)
        codes, versions = store.slice_codes()
        assert sorted(versions.tolist()) == [root] * 8 + [child] * 8
        assert ((codes // C_GROUP) == np.arange(K) % G).all()
        assert sum(n for _, _, n in store.counts()) == 16 * K

        other = store.add_codebook_version(np.ones((C, 2), dtype=np.float32), parent=child, groups=2)
        with pytest.raises(CheckpointError, match="2 groups"):
            cb.follow(force=True)  # a version of another G: not this checkpoint's codes
        assert store.latest_codebook_version() == other
