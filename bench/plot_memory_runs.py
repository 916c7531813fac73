"""Curves of one memory-learning lease (bench/smollm2_memory.md): held-out memory gap, own-memory loss and
codebook perplexity per pretraining step, and the QA rows as bars.

    python bench/plot_memory_runs.py bench/results/smollm2_memory/2026-12-02

writes ``pretraining.png`` and ``qa_rows.png`` into that folder and prints the gate table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PRETRAIN = {
    "pre-full": "full memory (float, MAC)",
    "pre-raw": "raw codebook, 12 codes",
    "pre-g1": "code space, 1 code/vector (12 codes)",
    "pre-g4": "code space, 4 codes/vector, no l2 norm",
    "pre-g4cos": "code space, 4 codes/vector, cosine (48 codes)",
    "pre-g1cos": "cosine code space, G = 1",
    "pre-g2cos": "cosine code space, G = 2",
    "pre-g8cos": "cosine code space, G = 8",
    "pre-pq2": "summed PQ from the float run, G = 2 (27 B)",
    "pre-pq4": "summed PQ from the float run, G = 4 (54 B)",
    "pre-pq8": "summed PQ from the float run, G = 8 (108 B)",
}


def records(path: Path) -> list[dict[str, Any]]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def plot_pretraining(folder: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for i, (name, label) in enumerate(PRETRAIN.items()):
        recs = records(folder / f"{name}.metrics.jsonl")
        if not recs:
            continue
        steps = [r["step"] for r in recs]
        style = dict(
            marker="o",
            markersize=3,
            label=label,
            color=f"C{i}",
            linestyle="--" if name == "pre-full" else "-",
        )
        axes[0].plot(steps, [r["heldout_gap_other_reconstruct"] for r in recs], **style)
        axes[1].plot(steps, [r["heldout_own_loss_reconstruct"] for r in recs], **style)
        if name != "pre-full":
            axes[2].plot(steps, [r["heldout_perplexity"] for r in recs], **style)
    axes[0].set_title("held-out gap: other chunk's memory − own (nats/token)")
    axes[1].set_title("held-out reconstruction loss with own memory")
    axes[2].set_title("held-out codebook perplexity (per group, of 512)")
    axes[2].axhline(128, color="grey", linewidth=0.8)
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("pretraining step (batch 64 chunks of 128 tokens)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "pretraining.png", dpi=110)


def summary(folder: Path, pattern: str) -> dict[str, Any] | None:
    found = sorted(folder.glob(pattern))
    return json.loads(found[0].read_text()) if found else None


def plot_qa(folder: Path) -> list[tuple[str, float, float, float | None]]:
    rows = [
        ("closed book (base-none)", "eval-base-none/none-*_summary.json"),
        ("closed book, r32 all layers", "eval-base-none-r32/none-*_summary.json"),
        ("paragraph (base-paragraph)", "eval-base-paragraph/paragraph-*_summary.json"),
        ("oracle compressed", "eval-qa-compressed/compressed-oracle-*_summary.json"),
        ("bank compressed", "eval-qa-compressed/compressed-counts-*_summary.json"),
        ("oracle compressed (G=4)", "eval-qa-g4cos/compressed-oracle-*_summary.json"),
        ("bank compressed (G=4)", "eval-qa-g4cos/compressed-counts-*_summary.json"),
        ("oracle full", "eval-qa-full*/full-oracle-*_summary.json"),
        ("bank full", "eval-qa-full*/full-counts-*_summary.json"),
        ("bank full, BM25 top 1", "eval-qa-full-rq/full-retrieve1bm25-*_summary.json"),
    ]
    rows.append(("bank full, sketch top 8", "eval-qa-full-rq/full-retrieve8sketch-*_summary.json"))
    for g in (1, 2, 4, 8):  # the summed-PQ runs (reconstruction query), and (-fw) with the writer frozen
        for run, tag in ((f"qa-pq{g}-rq", ""), (f"qa-pq{g}-rq-fw", ", writer frozen")):
            rows += [
                (f"oracle PQ G={g}{tag}", f"eval-{run}/compressed-oracle-*_summary.json"),
                (f"bank PQ G={g}{tag}, BM25 top 1", f"eval-{run}/compressed-retrieve1bm25-*_summary.json"),
                (
                    f"bank PQ G={g}{tag}, learned keys top 8",
                    f"eval-{run}/compressed-retrieve8-*_summary.json",
                ),
                (
                    f"bank PQ G={g}{tag}, sketch top 8",
                    f"eval-{run}/compressed-retrieve8sketch-*_summary.json",
                ),
            ]
    table = []
    sizes = set()
    for label, pattern in rows:
        s = summary(folder, pattern)
        if s is not None:
            table.append((label, 100 * s["em"], 100 * s["f1"], s.get("bytes_per_doc")))
            sizes.add((s.get("num_docs"), s.get("num_questions")))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.barh([t[0] for t in table], [t[2] for t in table], color="tab:blue")
    for i, t in enumerate(table):
        ax.text(t[2] + 0.5, i, f"F1 {t[2]:.1f}", va="center", fontsize=8)
    (docs, questions), *others = sorted(sizes, key=str) or [(None, None)]
    size = f"first {docs} paragraphs, {questions:,} questions" if docs and not others else "see the summaries"
    ax.set_xlabel(f"F1 on dev part A ({size}, greedy)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(folder / "qa_rows.png", dpi=110)
    return table


def plot_curve(folder: Path) -> list[tuple[int, float, float]]:
    """Bank F1 against bytes per document for every qa-g<G>cos run (whole bank) or qa-pq<G>-rq run (BM25 top
    1), closed book and paragraph as lines."""
    points = []
    for g in (1, 2, 4, 8):
        s = summary(folder, f"eval-qa-g{g}cos/compressed-counts-*_summary.json") or summary(
            folder, f"eval-qa-pq{g}-rq/compressed-retrieve1bm25-*_summary.json"
        )
        if s is not None:
            points.append((g, float(s["bytes_per_doc"]), 100 * float(s["f1"])))
            points_docs = s.get("num_docs")
    if not points:
        return points
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(
        [p[1] for p in points], [p[2] for p in points], marker="o", label="bank compressed (G codes/vector)"
    )
    for g, b, f1 in points:
        ax.annotate(f"G={g}", (b, f1), textcoords="offset points", xytext=(4, 4), fontsize=8)
    full = summary(folder, "eval-qa-full*/full-counts-*_summary.json") or summary(
        folder, "eval-qa-full-rq/full-retrieve1bm25-*_summary.json"
    )
    if full is not None:
        ax.scatter(
            [full["bytes_per_doc"]], [100 * full["f1"]], marker="s", color="black", label="bank full (floats)"
        )
    for pattern, label, color in (
        ("eval-base-none*/none-*_summary.json", "closed book", "tab:red"),
        ("eval-base-paragraph/paragraph-*_summary.json", "gold paragraph in the prompt", "tab:green"),
    ):
        s = summary(folder, pattern)
        if s is not None:
            ax.axhline(
                100 * s["f1"],
                color=color,
                linestyle="--",
                linewidth=1,
                label=f"{label} ({100 * s['f1']:.1f})",
            )
    ax.set_xscale("log")
    ax.set_xlabel("bytes per document (log)")
    ax.set_ylabel(f"F1, dev part A ({points_docs} paragraphs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "bytes_quality.png", dpi=110)
    return points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    folder = p.parse_args().folder
    plot_pretraining(folder)
    for label, em, f1, b in plot_qa(folder):
        print(f"{label:28s} EM {em:5.1f}  F1 {f1:5.1f}  bytes/doc {b}")
    for g, b, f1 in plot_curve(folder):
        print(f"bank compressed G={g}: {b:.0f} bytes/doc, F1 {f1:.1f}")


if __name__ == "__main__":
    main()
