"""Which document key can find a question's paragraph (issue 20)? Recall@1/8/32 on SQuAD dev part A
(each question against all of its 913 paragraphs) for keys a store could keep, with their bytes.

The learned keys over a document's codes (``mbc train-keys``) reached recall@8 0.32 on a real
SmolLM2 checkpoint (fifth lease, ``bench/results/smollm2_memory.md``): its 54 bytes of codes say little
about which words the paragraph holds, and SQuAD questions are found by their words (BM25 over the raw
text: 0.945). This compares, on the CPU and without any model forward:

* ``bm25``: Okapi BM25 over the raw text (``learner.eval.bm25``), the peer baseline (the store keeps
  no text);
* ``sketch-H`` (``memory_store.text_sketch``): a key *written with the codes* from the document's text and kept instead of it: its
  BM25 term weights (k1 1.5, b 0.75 against a fixed mean length, no idf) summed into H signed hash
  buckets (a count sketch); the question's key is its distinct words hashed the same way, each
  weighted by an idf that the store keeps per bucket (documents per bucket, updated as documents
  are written: nothing of the text survives). Inner product = BM25 up to hash collisions. H
  float16 numbers per document;
* ``embed``: the IDF-weighted mean of the base LM's input embeddings of the document's (question's)
  tokens, cosine; ``embed-learned``: the same features through two linear maps to 128 dimensions
  trained with in-batch InfoNCE on train part 1 (the way ``mbc train-keys`` trains).

    PYTHONPATH=. .venv/bin/python bench/key_sources.py --train <squad train part 1> --dev <dev part A> \\
        --base-lm <SmolLM2 .gguf>

Results: ``bench/results/key_sources.json`` (command, machine, date, settings).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import host_machine
from corpora.qa import load_dataset
from learner.eval.bm25 import BM25
from memory_store.text_sketch import TextSketch, bucket_counts

RECALL_AT = (1, 8, 32)


def recall(scores: npt.NDArray[Any], gold: npt.NDArray[np.int64]) -> dict[str, float]:
    """scores (Q, N), gold (Q,) -> recall@k of the gold column among the N."""
    g = scores[np.arange(len(gold)), gold][:, None]
    rank = (scores > g).sum(1)  # (Q,) ties count for the gold paragraph
    return {f"recall_at_{k}": round(float((rank < k).mean()), 4) for k in RECALL_AT}


def split(path: Path) -> tuple[list[str], list[str], npt.NDArray[np.int64]]:
    ds = load_dataset(path, "squad")
    order = ds.doc_order()
    where = {d: i for i, d in enumerate(order)}
    docs = [ds.documents[d].text for d in order]
    questions = [ex.question for ex in ds.examples]
    gold = np.array([where[ex.doc_id] for ex in ds.examples], dtype=np.int64)
    return docs, questions, gold


def embed_features(texts: list[str], tok: Any, emb: torch.Tensor, idf: dict[int, float]) -> torch.Tensor:
    """(N, D) IDF-weighted mean of the input embeddings of each text's tokens, unit length."""
    rows = []
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        if not ids:
            rows.append(torch.zeros(emb.shape[1]))
            continue
        w = torch.tensor([idf.get(i, 0.0) for i in ids])
        rows.append((emb[ids] * w[:, None]).sum(0) / max(float(w.sum()), 1e-9))
    return F.normalize(torch.stack(rows), dim=-1)


def train_projection(
    d_train: torch.Tensor, q_train: torch.Tensor, gold: npt.NDArray[np.int64], steps: int, seed: int = 0
) -> tuple[torch.nn.Linear, torch.nn.Linear, list[float]]:
    """Two linear maps (D -> 128) trained with symmetric in-batch InfoNCE over (question, paragraph)."""
    torch.manual_seed(seed)
    dim = d_train.shape[1]
    wd, wq = torch.nn.Linear(dim, 128), torch.nn.Linear(dim, 128)
    scale = torch.nn.Parameter(torch.tensor(math.log(20.0)))
    opt = torch.optim.AdamW([*wd.parameters(), *wq.parameters(), scale], lr=1e-3, weight_decay=0.01)
    by_doc: dict[int, list[int]] = {}
    for qi, di in enumerate(gold.tolist()):
        by_doc.setdefault(di, []).append(qi)
    docs = np.array(sorted(by_doc))
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        pick = rng.choice(docs, size=min(256, len(docs)), replace=False)
        qs = [by_doc[int(d)][rng.integers(len(by_doc[int(d)]))] for d in pick]
        kd = F.normalize(wd(d_train[pick]), dim=-1)
        kq = F.normalize(wq(q_train[qs]), dim=-1)
        logits = scale.exp().clamp(max=100.0) * kq @ kd.T
        target = torch.arange(len(pick))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return wd, wq, losses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True, help="SQuAD train file (the learned map's data)")
    ap.add_argument("--dev", type=Path, required=True, help="SQuAD dev file: the bank and its questions")
    ap.add_argument(
        "--base-lm", default=None, help="SmolLM2 GGUF or HF folder (the embed rows); none: skip them"
    )
    ap.add_argument("--sketch-dims", default="256,1024,4096", help="H of the sketch keys, comma-separated")
    ap.add_argument("--steps", type=int, default=400, help="steps of the learned embedding map")
    ap.add_argument("--out", type=Path, default=Path("bench/results/key_sources.json"))
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    docs, questions, gold = split(args.dev)
    rows: list[dict[str, Any]] = []

    bm = BM25(docs)
    scores = np.stack([bm.scores(q) for q in questions])
    rows.append({"key": "bm25 (raw text, bench only)", "bytes_per_doc": None, **recall(scores, gold)})
    print(rows[-1], flush=True)

    for h in [int(x) for x in args.sketch_dims.split(",")]:
        sketch = TextSketch(dims=h)
        dk = sketch.documents(docs).astype(np.float32)
        qk = sketch.queries(questions, bucket_counts(dk), len(docs))
        rows.append({"key": f"sketch-{h}", "bytes_per_doc": 2 * h, **recall(qk @ dk.T, gold)})
        print(rows[-1], flush=True)

    if args.base_lm:
        from safetensors import safe_open
        from transformers import AutoTokenizer

        from learner.model.gguf_source import resolve_lm_source

        folder = Path(str(resolve_lm_source(args.base_lm)[0]))
        tok = AutoTokenizer.from_pretrained(folder)
        emb = None
        for f in sorted(folder.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    if k.endswith("embed_tokens.weight"):
                        emb = st.get_tensor(k).float()
        assert emb is not None, f"no embed_tokens.weight in {folder}"
        t_docs, t_questions, t_gold = split(args.train)
        df_tok: Counter[int] = Counter()
        for t in t_docs:
            df_tok.update(set(tok(t, add_special_tokens=False)["input_ids"]))
        n = len(t_docs)
        idf = {i: math.log((n - c + 0.5) / (c + 0.5) + 1.0) for i, c in df_tok.items()}
        rare = math.log((n + 0.5) / 0.5 + 1.0)
        idf_all = {i: idf.get(i, rare) for i in range(emb.shape[0])}
        dev_d, dev_q = embed_features(docs, tok, emb, idf_all), embed_features(questions, tok, emb, idf_all)
        rows.append(
            {
                "key": "embed (untrained)",
                "bytes_per_doc": 2 * emb.shape[1],
                **recall((dev_q @ dev_d.T).numpy(), gold),
            }
        )
        print(rows[-1], flush=True)
        tr_d, tr_q = embed_features(t_docs, tok, emb, idf_all), embed_features(t_questions, tok, emb, idf_all)
        wd, wq, losses = train_projection(tr_d, tr_q, t_gold, args.steps)
        with torch.no_grad():
            kd = F.normalize(wd(dev_d), dim=-1)
            kq = F.normalize(wq(dev_q), dim=-1)
        rows.append(
            {
                "key": f"embed-learned ({args.steps} steps, 128 dims)",
                "bytes_per_doc": 256,
                "first_loss": round(losses[0], 3),
                "last_loss": round(losses[-1], 3),
                **recall((kq @ kd.T).numpy(), gold),
            }
        )
        print(rows[-1], flush=True)

    result = {
        "command": "python bench/key_sources.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": host_machine(),
        "dev": {"paragraphs": len(docs), "questions": len(questions)},
        "seconds": round(time.monotonic() - t0, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
