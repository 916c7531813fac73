"""Recall curves of retrieval (issue 20): learned keys of each compressed QA run next to BM25.

Reads ``keys-<run>.json`` (``mbc train-keys`` output: recall@1/8/32 of ``--val-data``, each question
against all of its documents, and the held-out curve of training) from a results folder, and BM25's
recall on SQuAD dev part A from ``bench/results/retrieval_bench.json`` and the text sketches' from
``bench/results/key_sources.json`` (``bench/key_sources.py``):

    python bench/plot_retrieval.py bench/results/smollm2_memory/<date>

writes ``retrieval_recall.png`` (recall@k against k, and held-out recall@8 per training step) into
that folder and prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

REPO = Path(__file__).resolve().parent.parent
KS = (1, 8, 32)


def key_reports(folder: Path) -> dict[str, dict[str, Any]]:
    """run name -> its train-keys report, for every readable keys-<run>.json in ``folder``."""
    out = {}
    for path in sorted(folder.glob("keys-*.json")):
        text = path.read_text()
        if "{" not in text:
            continue  # a run that failed before printing
        out[path.stem.removeprefix("keys-")] = json.loads(text[text.index("{") :])
    return out


def bm25_recall(bench: Path) -> dict[str, float] | None:
    if not bench.exists():
        return None
    found: dict[str, float] | None = json.loads(bench.read_text()).get("bm25_squad_dev_part_a")
    return found


def sketch_recalls(bench: Path) -> dict[str, dict[str, Any]]:
    """sketch name -> its row of bench/key_sources.py's results (recall@1/8/32, bytes per document)."""
    if not bench.exists():
        return {}
    rows = json.loads(bench.read_text()).get("rows", [])
    return {r["key"]: r for r in rows if str(r.get("key", "")).startswith("sketch-")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--bm25", type=Path, default=REPO / "bench/results/retrieval_bench.json")
    ap.add_argument("--sketches", type=Path, default=REPO / "bench/results/key_sources.json")
    args = ap.parse_args()
    reports = key_reports(args.folder)
    bm25 = bm25_recall(args.bm25)
    if not reports:
        raise SystemExit(f"no keys-*.json in {args.folder}: run the chain's learned-keys step first")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    print(f"{'retriever':<28} {'docs':>5} {'questions':>9}  " + "  ".join(f"R@{k:<3}" for k in KS))
    for name, r in reports.items():
        val = r.get("val") or r["heldout"]
        left.plot(
            KS,
            [val[f"recall_at_{k}"] for k in KS],
            marker="o",
            label=f"learned keys: {name} ({val.get('documents', r['documents'])} docs)",
        )
        print(
            f"{'keys ' + name:<28} {val.get('documents', r['documents']):>5} {val.get('questions', 0):>9}  "
            + "  ".join(f"{val[f'recall_at_{k}']:.3f}" for k in KS)
        )
        curve = r.get("curve") or []
        if curve:
            right.plot([c["step"] for c in curve], [c["heldout_recall_at_8"] for c in curve], label=name)
    if bm25:
        left.plot(KS, [bm25[f"recall_at_{k}"] for k in KS], "k--", marker="s", label="BM25 over the raw text")
        print(
            f"{'BM25 (text, bench only)':<28} {bm25['paragraphs']:>5} {bm25['questions']:>9}  "
            + "  ".join(f"{bm25[f'recall_at_{k}']:.3f}" for k in KS)
        )
    for name, r in sketch_recalls(args.sketches).items():
        if name in ("sketch-512", "sketch-1024", "sketch-4096"):
            label = f"text sketch, {r['bytes_per_doc']:,} B/doc"
            left.plot(KS, [r[f"recall_at_{k}"] for k in KS], ":", marker="^", label=label)
        print(
            f"{name + ' (text key)':<28} {'':>5} {'':>9}  "
            + "  ".join(f"{r[f'recall_at_{k}']:.3f}" for k in KS)
        )
    left.axhline(0.8, color="grey", lw=0.8, ls=":")
    left.set(xscale="log", xticks=KS, xticklabels=[str(k) for k in KS], ylim=(0, 1.02), xlabel="k")
    left.set(ylabel="recall@k of the gold paragraph", title="dev part A, every paragraph in the bank")
    left.legend(fontsize=8)
    right.set(xlabel="training step", ylabel="held-out recall@8", ylim=(0, 1.02), title="key head training")
    if right.lines:
        right.legend(fontsize=8)
    fig.tight_layout()
    out = args.folder / "retrieval_recall.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
