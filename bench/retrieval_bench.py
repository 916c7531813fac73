"""Retrieval benchmark (issue 20): retrieve-then-aggregate latency and index memory at 10^3, 10^5 and
10^6 stored documents, and BM25 over raw text as the peer baseline on SQuAD dev part A.

**Scale** (``--sizes``). A fresh SQLite store gets N documents of synthetic codes in the shape of the
``smollm2-135m`` preset (K·G = 48 codes per document into a 4 x 512-code codebook of 32-dimensional
code vectors), written through ``MemoryStore.write_batch`` as the learner writes them. Then per
question, timed (median and p95 over ``--questions`` questions):

* ``query_ms``: the question's query vector (the first cross-attention block's attention over the
  2,048 codes' memory rows, ``learner.ask.retrieval.query_vectors``);
* ``retrieve_ms``: ``MemoryStore.retrieve`` for the top ``--k`` (index refresh check, FAISS search,
  confirmation and codes from the database);
* ``aggregate_ms``: the exact counts aggregation over the retrieved documents' codes (4 blocks,
  8 heads x 64, D = 576) plus the citations' attention masses;
* for comparison ``whole_bank_ms``: today's whole-bank counts aggregation (store counts + 4 blocks).

The aggregator's weights are random (timing does not depend on them); the question encoder and the
LM's generation are left out: neither depends on the bank size. ``index_bytes`` is the FAISS index
as serialized; ``rss_delta_bytes`` what building the index (FAISS + the id maps) added to the process.
With 32-dimensional keys the index stays exact (flat) to 10^6 documents (``memory_store.doc_keys``);
``--index-choice N`` compares flat with IVF on N synthetic keys (build time, ms, IVF's recall of
the exact top k); a store that does build IVF reports ``ivf_recall_at_k`` against a flat search.

**BM25** (``--squad``): Okapi BM25 (k1 1.5, b 0.75, Lucene idf; lower-cased word tokens) over the raw
text of every paragraph of dev part A (913), each question's gold paragraph ranked; recall@1/8/32.
The store keeps no text, so this is a bench-only peer baseline.

    PYTHONPATH=. .venv/bin/python bench/retrieval_bench.py                  # 1e3, 1e5, 1e6 + BM25
    PYTHONPATH=. .venv/bin/python bench/retrieval_bench.py --sizes 1000 --questions 20 --no-bm25

Results: ``bench/results/retrieval_bench.json`` (command, machine, date, settings).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import host_machine
from learner.ask.retrieval import document_masses, first_block_keys, query_vectors, retrieved_codes
from learner.eval.bm25 import BM25
from learner.model.aggregator import Aggregator
from learner.model.memory import count_codes, memory_from_counts
from memory_store.codec import pack_codes_batch
from memory_store.doc_keys import KeyIndex, document_keys
from memory_store.records import DocumentRecord
from memory_store.store import MemoryStore

REPO = Path(__file__).resolve().parent.parent
CODES, GC, DIM, HIDDEN, NQ = 48, 2048, 32, 576, 12  # smollm2-135m: K·G codes, G·C, d, D, K
SQUAD = Path("/work/shared/data/squad/squad-v1.1-dev-part-a.json")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class _Model:
    """What query_vectors reads of an MBCModel: the aggregator (random weights, smollm2 shapes)."""

    def __init__(self, device: torch.device) -> None:
        torch.manual_seed(0)
        self.aggregator = Aggregator(torch.nn.Identity(), HIDDEN, 4, 8, 64).eval().to(device)


def _clock(device: torch.device) -> float:
    """perf_counter after the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fill(store: MemoryStore, n: int, seed: int, batch: int = 5000) -> float:
    """Write ``n`` documents of random codes; returns seconds."""
    rng = np.random.default_rng(seed)
    version = store.add_codebook_version(
        (lambda v: v / np.linalg.norm(v, axis=1, keepdims=True))(rng.normal(size=(GC, DIM))).astype(
            np.float32
        )
    )
    sha = hashlib.sha256(b"x").hexdigest()
    t = time.perf_counter()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        blobs = pack_codes_batch(rng.integers(0, GC, size=(m, CODES)), GC)
        docs = [
            DocumentRecord(
                f"doc{start + i:07d}",
                f"src{(start + i) % 8}",
                T0 + timedelta(seconds=start + i),
                sha,
                CODES,
                version,
                blobs[i],
                title=f"title {start + i}",
                url=f"https://example.org/{start + i}",
            )
            for i in range(m)
        ]
        store.write_batch(docs)
    return time.perf_counter() - t


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "p95": xs[min(len(xs) - 1, int(0.95 * len(xs)))], "max": xs[-1]}


@torch.no_grad()
def scale(
    n: int, questions: int, k: int, workdir: Path, device: torch.device, on_device: bool = True
) -> dict[str, Any]:
    url = f"sqlite:///{workdir / f'bench-{n}.db'}"
    key_device = str(device) if device.type == "cuda" and on_device else None  # the answerer's choice
    store = MemoryStore(url, auto_migrate=True, index_dir=workdir / f"faiss-{n}", key_device=key_device)
    write_s = fill(store, n, seed=n)
    model = _Model(device)
    book = torch.from_numpy(store.get_codebook(1).vectors)  # (G·C, d)
    rows = torch.randn(GC, HIDDEN).to(device)  # memory rows of the codes (a trained model decodes them)
    keys = first_block_keys(model, rows)  # type: ignore[arg-type]  # once per version, as the answerer
    rss0, t = _rss(), time.perf_counter()
    store.documents_index.refresh()  # the first build, from the database
    build_s, rss_delta = time.perf_counter() - t, _rss() - rss0
    gen = torch.Generator().manual_seed(1)
    times: dict[str, list[float]] = {
        "query_ms": [],
        "retrieve_ms": [],
        "aggregate_ms": [],
        "whole_bank_ms": [],
    }
    total: list[float] = []
    hits_all = []
    for _ in range(questions):
        x = torch.randn(1, NQ, HIDDEN, generator=gen).to(device)  # (1, K, D) question vectors
        t0 = _clock(device)
        q = query_vectors(model, x, rows, book, keys)[0].numpy()  # type: ignore[arg-type]
        t1 = _clock(device)
        found = store.retrieve(lambda v, b, q=q: q, k)
        t2 = _clock(device)
        codes, versions = retrieved_codes(found)
        counted = count_codes(codes, versions)
        memory = memory_from_counts(counted, {1: rows}, device)
        model.aggregator.attend(x, memory)  # the answer's prefix
        document_masses(
            [(d.codebook_version, d.indices) for d in found],
            counted,
            model.aggregator.attention_mass(x, memory)[0],
        )
        t3 = _clock(device)
        whole = memory_from_counts([tuple(r) for r in store.counts()], {1: rows}, device)
        model.aggregator.attend(x, whole)
        t4 = _clock(device)
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[key].append(dt * 1000)
        total.append((t3 - t0) * 1000)
        hits_all.append((q, [d.id for d in found]))
        assert len(found) == k
    index = store.documents_index
    out: dict[str, Any] = {
        "documents": n,
        "device": str(device),
        "keys_searched_on": key_device or "host (FAISS)",
        "write_s": write_s,
        "index_build_s": build_s,
        "index": index.describe()["versions"],
        "index_bytes": index.memory_bytes(),
        "rss_delta_bytes": rss_delta,
        "retrieve_and_aggregate_ms": _stats(total),
        **{key: _stats(v) for key, v in times.items()},
    }
    kind = next(iter(index.versions.values())).kind
    if kind != "IndexFlatIP":
        out["ivf_recall_at_k"] = ivf_recall(store, hits_all, k)
    store.close()
    return out


def ivf_recall(store: MemoryStore, hits: list[tuple[np.ndarray, list[str]]], k: int) -> float:
    """Share of the exact top k (flat search over every key) that the IVF index returned."""
    import sqlalchemy as sa

    from memory_store.codec import unpack_codes_batch
    from memory_store.models import documents

    with store.engine.connect() as conn:
        ids, blobs = zip(
            *conn.execute(sa.select(documents.c.id, documents.c.codes).order_by(documents.c.id)), strict=True
        )
    keys = document_keys(
        unpack_codes_batch([bytes(b) for b in blobs], CODES, GC), store.get_codebook(1).vectors
    )
    flat = KeyIndex.build(1, np.arange(len(ids), dtype=np.int64), keys, flat_limit=len(ids) + 1)
    got = [len(set(found) & {ids[i] for i in flat.search(q, k)[1]}) / k for q, found in hits]
    return float(np.mean(got))


def index_choice(n: int, k: int, queries: int = 30) -> dict[str, Any]:
    """Flat against IVF on ``n`` synthetic keys (no database): build time, ms per query, IVF's recall
    of the exact top ``k`` at several ``nprobe``, for queries near a stored key and random ones."""
    rng = np.random.default_rng(0)
    book = rng.normal(size=(GC, DIM)).astype(np.float32)
    book /= np.linalg.norm(book, axis=1, keepdims=True)
    keys = np.concatenate(
        [document_keys(rng.integers(0, GC, size=(50_000, CODES)), book) for _ in range(n // 50_000)]
    )
    ids = np.arange(len(keys), dtype=np.int64)
    t = time.perf_counter()
    flat = KeyIndex.build(1, ids, keys, flat_limit=len(keys))
    flat_s = time.perf_counter() - t
    t = time.perf_counter()
    ivf = KeyIndex.build(1, ids, keys, flat_limit=0)
    ivf_s = time.perf_counter() - t
    near = (
        keys[rng.integers(0, len(keys), queries)]
        + 0.5 * rng.normal(size=(queries, DIM)).astype(np.float32) / DIM**0.5
    )
    far = document_keys(rng.integers(0, GC, size=(queries, CODES)), book)
    out: dict[str, Any] = {
        "documents": len(keys),
        "flat_build_s": flat_s,
        "ivf_build_s": ivf_s,
        "nlist": ivf.index.nlist,
    }
    out["flat_bytes"], out["ivf_bytes"] = flat.memory_bytes(), ivf.memory_bytes()
    for name, qs in (("near_a_stored_key", near), ("random", far)):
        exact, ms = [], []
        for q in qs:
            t = time.perf_counter()
            exact.append(set(flat.search(q, k)[1].tolist()))
            ms.append((time.perf_counter() - t) * 1000)
        row: dict[str, Any] = {"flat_ms": statistics.median(ms)}
        for nprobe in (32, 128, 256):
            ivf.index.nprobe = nprobe
            ms, rec = [], []
            for q, e in zip(qs, exact, strict=True):
                t = time.perf_counter()
                got = ivf.search(q, k)[1]
                ms.append((time.perf_counter() - t) * 1000)
                rec.append(len(e & set(got.tolist())) / k)
            row[f"ivf_nprobe{nprobe}"] = {
                "ms": statistics.median(ms),
                "recall_of_exact_top_k": float(np.mean(rec)),
            }
        out[name] = row
    out["faiss_threads_per_search"] = 1
    return out


def bm25_recall(
    path: Path, ks: tuple[int, ...] = (1, 8, 32), k1: float = 1.5, b: float = 0.75
) -> dict[str, Any]:
    """Okapi BM25 (learner.eval.bm25) over every paragraph of a SQuAD file; recall@k of each question's
    gold paragraph."""
    data = json.loads(path.read_text())["data"]
    paragraphs = [p for art in data for p in art["paragraphs"]]
    bm25 = BM25([p["context"] for p in paragraphs], k1, b)
    hits = {k: 0 for k in ks}
    n_q = 0
    for gold, p in enumerate(paragraphs):
        for qa in p["qas"]:
            scores = bm25.scores(qa["question"])  # (N,)
            rank = int((scores > scores[gold]).sum())  # ties count in the gold paragraph's favour
            n_q += 1
            for k in ks:
                hits[k] += rank < k
    return {
        "dataset": str(path),
        "paragraphs": len(paragraphs),
        "questions": n_q,
        "bm25": {
            "k1": k1,
            "b": b,
            "idf": "log((N - df + 0.5) / (df + 0.5) + 1)",
            "tokens": "lower-cased \\w+",
        },
        **{f"recall_at_{k}": hits[k] / n_q for k in ks},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,100000,1000000", help="stored documents, comma-separated")
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--k", type=int, default=8, help="documents retrieved per question")
    ap.add_argument("--squad", type=Path, default=SQUAD)
    ap.add_argument("--bm25", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--index-choice", type=int, default=1_000_000, help="keys for flat vs IVF (0: skip)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the stores go [default: a temp dir]")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: least noisy on shared cores)")
    ap.add_argument("--device", default="cpu", help="where the aggregator runs: cpu, cuda [default: cpu]")
    ap.add_argument(
        "--keys-on-device",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --device cuda, search the document keys there too, as `mbc ask` does [default: on]",
    )
    ap.add_argument(
        "--note",
        default="2 shared cores: other jobs ran at the same time, so timings are noisy",
        help="a line on the machine, saved with the figures",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/retrieval_bench.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    host = host_machine()
    device = torch.device(args.device)
    import faiss

    result: dict[str, Any] = {
        "benchmark": "retrieval (FAISS over document keys) + exact aggregation over the top k; BM25 peer baseline",
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            **host,
            "note": args.note,
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "libraries": {"torch": torch.__version__, "faiss": faiss.__version__, "numpy": np.__version__},
        },
        "settings": {
            "k": args.k,
            "questions": args.questions,
            "torch_threads": args.threads,
            "codes_per_doc": CODES,
            "codebook_rows": GC,
        }
        | {"key_dim": DIM, "hidden": HIDDEN, "aggregator": "4 blocks x 8 heads x 64, random weights"},
        "scale": [],
    }
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            row = scale(n, args.questions, args.k, Path(tmp), device, args.keys_on_device)
            print(json.dumps(row), flush=True)
            result["scale"].append(row)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.index_choice:
        result["index_choice"] = index_choice(args.index_choice, args.k)
        print(json.dumps(result["index_choice"]), flush=True)
    if args.bm25:
        result["bm25_squad_dev_part_a"] = bm25_recall(args.squad)
        print(json.dumps(result["bm25_squad_dev_part_a"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} in {math.ceil(time.process_time())} s CPU")


if __name__ == "__main__":
    main()
