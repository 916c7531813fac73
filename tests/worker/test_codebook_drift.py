"""`--codebook ema` on a stream whose topic mix shifts (Reuters in publication order): the
quantization error on recent documents is lower than with `frozen`, and every stored document
still decodes with its own codebook version."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from learner.inference.encode import DocumentEncoder
from learner.model.codebook_math import nearest_codes
from learner.worker.online_codebook import OnlineCodebook
from memory_store.codec import pack_codes_batch, unpack_codes
from memory_store.records import DocumentRecord
from memory_store.store import MemoryStore
from tests.conftest import SHARED_DATA
from tests.worker.conftest import WORDS, tiny_k

WARMUP, STREAM, RECENT, BATCH = 400, 1600, 400, 50


def stream_texts() -> list[str]:
    """Reuters in publication order when the shared data is there, else a synthetic topic shift."""
    path = SHARED_DATA / "reuters" / "reuters21578.jsonl"
    if path.is_file():
        rows = [json.loads(line) for line in path.open()]
        rows = [r for r in rows if (r.get("body") or "").strip() and r.get("published_at")]
        rows.sort(key=lambda r: r["published_at"])
        step = max(1, len(rows) // (WARMUP + STREAM))
        return [r["body"][:600] for r in rows[::step]][: WARMUP + STREAM]
    early, late = WORDS[: len(WORDS) // 2], WORDS[len(WORDS) // 2 :]
    rng = np.random.default_rng(0)
    out = []
    for i in range(WARMUP + STREAM):
        vocab = early if i < WARMUP + STREAM // 3 else late
        out.append(" ".join(rng.choice(vocab, 40)))
    return out


def run(store: MemoryStore, root: torch.Tensor, z: torch.Tensor, mode: str) -> tuple[float, OnlineCodebook]:
    """Stream ``z`` (N, K, D) through an OnlineCodebook in batches, storing every document's codes."""
    cb = OnlineCodebook(store, torch.device("cpu"), mode=mode, publish_every_docs=200, follow_every_s=0.0)  # type: ignore[arg-type]
    cb.bootstrap(root)
    errors = []
    for i in range(0, z.shape[0], BATCH):
        chunk = z[i : i + BATCH]
        version = cb.follow()
        codes, err = cb.quantize(chunk)
        blobs = pack_codes_batch(codes.numpy(), root.shape[0])
        store.write_batch(
            [
                DocumentRecord(
                    f"d{i + j}",
                    "reuters",
                    datetime(2026, 1, 1),
                    "0" * 64,
                    int(codes.shape[1]),
                    version,
                    b,
                )
                for j, b in enumerate(blobs)
            ]
        )
        cb.observe(chunk, codes, err)
        if cb.due():
            cb.publish()
        errors.append(err.mean(dim=1))  # (b,) per document
    per_doc = torch.cat(errors)
    return float(per_doc[-RECENT:].mean()), cb


@pytest.mark.slow
def test_ema_tracks_drift_and_every_document_decodes_with_its_version(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    encoder = DocumentEncoder.load(tiny_checkpoint, "cpu")
    texts = stream_texts()
    z = torch.cat([encoder.encode(texts[i : i + 100]) for i in range(0, len(texts), 100)])  # (N, K, D)
    # A codebook fitted to the early stream: what a frozen deployment would keep using.
    warm = MemoryStore(f"sqlite:///{tmp_path / 'warm.db'}", auto_migrate=True)
    run(warm, encoder.initial_codebook(), z[:WARMUP], "ema")
    fitted = torch.from_numpy(warm.get_codebook(warm.latest_codebook_version() or 0).vectors)
    stores = {
        m: MemoryStore(f"sqlite:///{tmp_path / f'{m}.db'}", auto_migrate=True) for m in ("frozen", "ema")
    }
    frozen_err, _ = run(stores["frozen"], fitted, z[WARMUP:], "frozen")
    ema_err, _ = run(stores["ema"], fitted, z[WARMUP:], "ema")
    assert ema_err < frozen_err, (ema_err, frozen_err)
    assert len(stores["frozen"].codebook_versions()) == 1
    versions = stores["ema"].codebook_versions()
    assert len(versions) == 1 + STREAM // 200
    # Every stored document decodes with its own version: its codes are the nearest codes of its
    # context vectors in exactly that version, although later versions moved.
    books = {v.version: torch.from_numpy(stores["ema"].get_codebook(v.version).vectors) for v in versions}
    used = set()
    for n in range(0, STREAM, 37):
        doc = stores["ema"].document(f"d{n}")
        assert doc is not None
        used.add(doc.codebook_version)
        codes = unpack_codes(doc.codes, tiny_k(), books[doc.codebook_version].shape[0])
        assert codes.tolist() == nearest_codes(z[WARMUP + n], books[doc.codebook_version]).tolist()
    assert len(used) > 3
    for s in (warm, *stores.values()):
        s.close()
