"""How much of a float memory survives a quantizer fitted after the fact? (issue 19, CPU)

    python bench/posthoc_quantize.py --checkpoint <pretrain-amortizer --memory full run> \
        --data <reuters21578.jsonl> --base-lm <the .gguf> --fit-chunks 512 --eval-chunks 64

A float-memory pretraining run (``mbc pretrain-amortizer --memory full``) has learned to write each
chunk into K context vectors that the LM reads back (held-out gap "other chunk − own" of 2.1 nats per
token on the H200, 2026-12-03), where the compressed run trained beside it reached 0.73. This asks
which quantizer structure keeps most of the float memory at a given number of bytes, before any GPU
minute is spent on training it end to end: context vectors of ``--fit-chunks`` training chunks are
standardised per slot (what all documents share in a slot removed, every channel scaled to unit
spread), each quantizer is fitted on them with faiss (product quantization: G codes per vector, one
code book per sub-vector; residual quantization: L codes per vector, each coding what the previous
left), and the held-out chunks are reconstructed by the checkpoint's own LM from the decoded vectors.

Reported per quantizer: bytes per document (K·codes·log2(C)/8), held-out reconstruction loss and the
fraction of the float memory's gap it keeps, ``kept = (other − q) / (other − float)`` (1: as good as
float, 0: no better than another chunk's memory). The held-out chunks are the run's own (same seed
and split), so the float row reproduces its final ``heldout_own_loss_reconstruct``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import host_machine, torch_machine
from corpora.texts import load_texts
from infra.errors import MbcError
from learner.checkpoint import load_checkpoint
from learner.model.mbc import MBCModel
from learner.pretraining.batches import (
    Chunk,
    chunk_texts,
    collate_pretrain,
    query_batch,
    split_held_out,
    start_id,
)
from learner.pretraining.objective import lm_logits, token_losses
from learner.text.tokenizers import Tokenizers


@dataclass(frozen=True)
class Quantizer:
    """One faiss quantizer of standardised vectors (D,) -> ``codes`` codes of ``bits`` bits."""

    name: str
    kind: str  # "pq" | "rq"
    codes: int
    bits: int

    def bytes_per_doc(self, slots: int) -> float:
        return slots * self.codes * self.bits / 8


def parse_quantizer(spec: str) -> Quantizer:
    """``pq4`` (4 sub-vectors, 9 bits), ``rq8``, ``pq8x8`` (8 codes of 8 bits)."""
    kind, rest = spec[:2], spec[2:]
    codes, _, bits = rest.partition("x")
    if kind not in ("pq", "rq") or not codes.isdigit() or (bits and not bits.isdigit()):
        raise SystemExit(f"--quantizers: {spec!r} is not pqN, rqN, pqNxB or rqNxB")
    return Quantizer(spec, kind, int(codes), int(bits or 9))


def fit_and_decode(q: Quantizer, fit: np.ndarray, held: np.ndarray, seed: int) -> np.ndarray:
    """Fit ``q`` on ``fit`` (n, D) float32 and return the decoded ``held`` (m, D)."""
    import faiss

    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    dim = fit.shape[1]
    if q.kind == "pq":
        if dim % q.codes:
            raise SystemExit(f"{q.name}: {dim} dimensions do not split into {q.codes} sub-vectors")
        pq = faiss.ProductQuantizer(dim, q.codes, q.bits)
        pq.cp.seed = seed
        pq.train(fit)
        return pq.decode(pq.compute_codes(held))  # type: ignore[no-any-return]
    rq = faiss.ResidualQuantizer(dim, q.codes, q.bits)
    rq.cp.seed = seed
    rq.train_type = faiss.ResidualQuantizer.Train_default
    rq.max_beam_size = 1  # greedy encoding: what a worker would afford per document
    rq.train(fit)
    return rq.decode(rq.compute_codes(held))  # type: ignore[no-any-return]


@torch.no_grad()
def amortize(
    model: MBCModel, tok: Tokenizers, chunks: list[Chunk], batch_size: int, progress: bool
) -> torch.Tensor:
    """Context vectors (N, K, D) of ``chunks``."""
    parts = []
    for i in tqdm(range(0, len(chunks), batch_size), desc="amortize", disable=not progress):
        batch = collate_pretrain(
            chunks[i : i + batch_size], "reconstruct", 0, tok.amort_pad_id, tok.lm_pad_id
        )
        parts.append(model.amortize(batch.doc_ids, batch.doc_mask).float())
    return torch.cat(parts)


@torch.no_grad()
def reconstruction_loss(
    model: MBCModel, tok: Tokenizers, chunks: list[Chunk], vectors: torch.Tensor, batch_size: int
) -> float:
    """Mean held-out reconstruction loss per token when chunk i reads ``vectors[i]`` (N, K, D)."""
    q_ids, q_mask = query_batch(tok, model.config.max_question_tokens)
    total, count = 0.0, 0
    for i in range(0, len(chunks), batch_size):
        batch = collate_pretrain(
            chunks[i : i + batch_size], "reconstruct", start_id(tok.lm), tok.amort_pad_id, tok.lm_pad_id
        )
        ce, _, scored = token_losses(
            lm_logits(model, batch, vectors[i : i + batch_size], q_ids, q_mask), batch.lm_labels
        )
        total += float(ce.sum())
        count += int(scored.sum())
    return total / max(count, 1)


def held_out_split(
    texts: list[str], tok: Tokenizers, pretrain: dict[str, Any]
) -> tuple[list[Chunk], list[Chunk]]:
    """(held-out, training) chunks exactly as the pretraining run split them."""
    chunks = chunk_texts(texts, tok, pretrain["doc_tokens"], pretrain["cont_tokens"], "reconstruct")
    return split_held_out(chunks, pretrain["eval_chunks"], pretrain["seed"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    model, tok, meta = load_checkpoint(args.checkpoint, lm_source=args.base_lm)
    model.eval()
    state = json.loads((Path(args.checkpoint) / "trainer_state.json").read_text())
    if "pretrain" not in state or state["pretrain"]["memory"] != "full":
        raise SystemExit(f"{args.checkpoint}: not a `mbc pretrain-amortizer --memory full` checkpoint")
    pretrain = state["pretrain"]
    texts = load_texts(args.data, args.format)
    held, train = held_out_split(texts, tok, pretrain)
    held = held[: args.eval_chunks]
    rng = np.random.default_rng(args.seed)
    fit_chunks = [
        train[i] for i in rng.choice(len(train), size=min(args.fit_chunks, len(train)), replace=False)
    ]
    t0 = time.perf_counter()
    z_fit = amortize(model, tok, fit_chunks, args.batch_size, args.progress)  # (F, K, D)
    z_held = amortize(model, tok, held, args.batch_size, args.progress)  # (H, K, D)
    seconds_amortize = time.perf_counter() - t0
    slots, dim = z_fit.shape[1], z_fit.shape[2]
    mean, std = z_fit.mean(0), z_fit.std(0).clamp_min(1e-5)  # (K, D): per slot
    u_fit = ((z_fit - mean) / std).reshape(-1, dim).numpy().astype(np.float32)
    u_held = ((z_held - mean) / std).reshape(-1, dim).numpy().astype(np.float32)
    shared = torch.broadcast_to(mean, z_held.shape)

    def loss(v: torch.Tensor) -> float:
        return reconstruction_loss(model, tok, held, v, args.batch_size)

    rows: list[dict[str, Any]] = []
    ref = {
        "float": loss(z_held),
        "other": loss(z_held.roll(1, dims=0)),
        "zero": loss(torch.zeros_like(z_held)),
    }
    ref["slot mean"] = loss(shared)  # what every document shares: the memory of no document in particular
    span = ref["other"] - ref["float"]
    bytes_full = slots * dim * 2  # bf16
    for name, value in ref.items():
        rows.append({"quantizer": name, "bytes": bytes_full if name == "float" else 0, "loss": value})
    for spec in tqdm(args.quantizers, desc="quantizers", disable=not args.progress):
        q = parse_quantizer(spec)
        t = time.perf_counter()
        decoded = torch.from_numpy(fit_and_decode(q, u_fit, u_held, args.seed)).view_as(z_held)
        value = loss(decoded * std + mean)
        rows.append(
            {
                "quantizer": q.name,
                "bytes": q.bytes_per_doc(slots),
                "loss": value,
                "seconds": time.perf_counter() - t,
            }
        )
    for row in rows:
        row["kept"] = round((ref["other"] - row["loss"]) / span, 3) if span > 0 else math.nan
        row["loss"] = round(row["loss"], 4)
    return {
        "checkpoint": str(args.checkpoint),
        "pretrain_step": state["state"]["step"],
        "fit_chunks": len(fit_chunks),
        "fit_vectors": int(u_fit.shape[0]),
        "eval_chunks": len(held),
        "slots": slots,
        "dim": dim,
        "seconds_amortize": round(seconds_amortize, 1),
        "rows": rows,
        "train_memory": meta.train_memory,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--format", default="reuters")
    ap.add_argument("--base-lm", default=None, help="the .gguf the checkpoint was trained on")
    ap.add_argument("--fit-chunks", type=int, default=512)
    ap.add_argument("--eval-chunks", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--quantizers", nargs="+", default=["pq4x8", "pq4", "rq4", "pq8", "rq8", "pq16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--out", type=Path, default=Path("bench/results/posthoc_quantize.json"))
    args = ap.parse_args()
    try:
        result = run(args)
    except MbcError as exc:
        raise SystemExit(f"error: {exc}") from None
    result |= {
        "date": dt.date.today().isoformat(),
        "machine": host_machine() | torch_machine(),
        "command": " ".join(sys.argv),
    }
    for row in result["rows"]:
        print(f"{row['quantizer']:>10}  {row['bytes']:>8g} B/doc  loss {row['loss']:.4f}  kept {row['kept']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    print(f"wrote {plot(result, args.out.with_suffix('.png'))}")


def plot(result: dict[str, Any], path: Path) -> Path:
    """Kept share of the float gap against bytes per document, one line per quantizer kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, label in (("pq", "product quantization (G codes per vector)"), ("rq", "residual (L levels)")):
        rows = sorted(
            (r for r in result["rows"] if r["quantizer"].startswith(kind) and "x" not in r["quantizer"]),
            key=lambda r: r["bytes"],
        )
        if rows:
            ax.plot([r["bytes"] for r in rows], [r["kept"] for r in rows], marker="o", label=label)
            for r in rows:
                ax.annotate(
                    r["quantizer"], (r["bytes"], r["kept"]), xytext=(4, -10), textcoords="offset points"
                )
    for r in result["rows"]:
        if r["quantizer"] in ("zero", "slot mean"):
            ax.axhline(r["kept"], linestyle="--", linewidth=1, color="grey")
            ax.annotate(f"{r['quantizer']} memory", (1, r["kept"]), xytext=(2, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlim(left=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("bytes per document (log)")
    ax.set_ylabel("share of the float memory's gap kept")
    ax.set_title(
        f"quantizers fitted to a float run's vectors, no training ({result['eval_chunks']} held-out chunks)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    main()
