"""Does a QA checkpoint read its memory? The QA loss of dev questions with their own paragraph's
memory, a zero memory and another paragraph's memory (issue 19).

    python bench/qa_memory_gap.py --checkpoint <run>/checkpoints/last --data <squad dev json> \
        --num-docs 30 --out bench/results/qa_memory_gap.json

The pretraining gap (``mbc pretrain-amortizer``'s held-out "other doc − own") says whether the
memory carries its document; this says whether the answering side *uses* it. Each question gets a
memory of only its own paragraph (the oracle row of ``mbc eval``), and the same question is scored
again with that memory replaced by zeros and by the next paragraph's memory. A model that answers
from the memory has own < other; own ≈ other ≈ zero means it answers closed book, whatever the
memory holds. Loss = mean cross-entropy of the answer tokens (+ EOS), teacher forced, as training
computes it. Runs on CPU in minutes for 30 paragraphs (~230 questions) of SmolLM2-135M.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import torch_machine
from corpora.qa import load_dataset
from infra.errors import MbcError
from learner.checkpoint import load_checkpoint
from learner.model.memory import Memory
from learner.text.batching import TextBatcher, collate_train


@torch.no_grad()
def memory_gap(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tok, meta = load_checkpoint(args.checkpoint, device=device, lm_source=args.base_lm)
    model.eval()
    # the base LM sits in bf16 on a GPU (place_model); the memory path computes in fp32 there
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return _memory_gap(args, model, tok, meta, device)


def _memory_gap(
    args: argparse.Namespace, model: Any, tok: Any, meta: Any, device: torch.device
) -> dict[str, Any]:
    ds = load_dataset(args.data, "squad").first_docs(args.num_docs)
    docs = list(ds.documents)
    if len(docs) < 2:
        raise SystemExit("need at least 2 paragraphs (--num-docs) for the other-paragraph memory")
    batcher = TextBatcher(tok, model.config)
    encoded = batcher.encode(ds)
    compressed = meta.train_memory == "compressed"
    # each paragraph's memory rows: (R, D), R = K floats (full) or K·G decoded codes (compressed)
    rows: dict[str, torch.Tensor] = {}
    doc_ids = batcher.documents([ds.documents[d].text for d in docs])
    for i in range(0, len(docs), args.batch_size):
        batch = collate_train(
            [type(encoded[0])(d, [0], [0], [0]) for d in doc_ids[i : i + args.batch_size]],
            tok.amort_pad_id,
            tok.lm_pad_id,
        ).to(device)
        z = model.amortize(batch.doc_ids, batch.doc_mask)  # (B, K, D)
        v = model.codebook.lookup(model.quantize(z)).to(z.dtype) if compressed else z
        rows |= {docs[i + j]: v[j] for j in range(v.shape[0])}
    index = {d: n for n, d in enumerate(docs)}
    sums = {"own": 0.0, "zero": 0.0, "other": 0.0}
    tokens = 0
    for i in tqdm(range(0, len(encoded), args.batch_size), desc="questions", disable=not args.progress):
        items, exs = encoded[i : i + args.batch_size], ds.examples[i : i + args.batch_size]
        batch = collate_train(items, tok.amort_pad_id, tok.lm_pad_id).to(device)
        own = torch.stack([rows[ex.doc_id] for ex in exs])  # (B, R, D)
        other = torch.stack([rows[docs[(index[ex.doc_id] + 1) % len(docs)]] for ex in exs])
        n = int((batch.qa_labels != -100).sum())
        for name, vectors in (("own", own), ("zero", torch.zeros_like(own)), ("other", other)):
            prefix = model.prefix(batch.q_ids, batch.q_mask, Memory(vectors))
            loss = model.lm(batch.qa_ids, batch.qa_mask, prefix, labels=batch.qa_labels).loss
            sums[name] += float(loss) * n
        tokens += n
    losses = {k: v / tokens for k, v in sums.items()}
    return {
        "checkpoint": str(args.checkpoint),
        "trained_memory": meta.train_memory,
        "paragraphs": len(docs),
        "questions": len(encoded),
        "answer_tokens": tokens,
        "loss_own": round(losses["own"], 4),
        "loss_zero": round(losses["zero"], 4),
        "loss_other": round(losses["other"], 4),
        "gap_other": round(losses["other"] - losses["own"], 4),
        "gap_zero": round(losses["zero"] - losses["own"], 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, nargs="+")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--base-lm", default=None, help="the .gguf the checkpoints were trained on")
    ap.add_argument("--num-docs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--out", type=Path, default=Path("bench/results/qa_memory_gap.json"))
    args = ap.parse_args()
    rows = []
    for path in args.checkpoint:
        row = memory_gap(argparse.Namespace(**{**vars(args), "checkpoint": path}))
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {
        "command": " ".join(sys.argv),
        "date": dt.date.today().isoformat(),
        "machine": torch_machine(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    try:
        main()
    except MbcError as e:  # a wrong path or setting: one line, not a traceback
        raise SystemExit(f"error: {e}") from None
