"""From-scratch MBC vs MAC vs base LM on the synthetic stream, end to end through the `mbc` CLI.

Writes one JSON to ``bench/results/`` with the exact commands, the machine, the date, training
throughput (examples/s from each run's metrics.jsonl) and every `mbc eval` summary (EM, F1, bytes,
adaptation and inference ms) for banks of 32 and ``--big-bank`` documents. These are models trained
FROM SCRATCH on synthetic data (no pretrained weights exist on our machines): say so next to any
number taken from here.

    .venv/bin/python bench/learner_scratch.py --preset distilgpt2          # GPU (bf16)
    .venv/bin/python bench/learner_scratch.py --smoke                      # CPU plumbing check, minutes
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MBC = [sys.executable, "-c", "from infra.cli import main; main()"]


def run(cmd: list[str], log: list[str]) -> str:
    """Run an `mbc` command, recording it; return stdout."""
    log.append("mbc " + shlex.join(cmd))
    proc = subprocess.run([*MBC, *cmd], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"command failed ({proc.returncode}): mbc {shlex.join(cmd)}")
    return proc.stdout


def machine() -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def throughput(run_dir: Path) -> float | None:
    rates = [
        r["examples_per_s"]
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if r.get("split") == "train" and r.get("examples_per_s")
    ]
    return statistics.mean(rates[1:] or rates) if rates else None  # the first epoch includes warm-up effects


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="distilgpt2", help="model preset (default distilgpt2)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench-scratch", help="data and run folder")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result JSON (default bench/results/learner_scratch_<preset>_<date>.json)",
    )
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument(
        "--lr", type=float, default=3e-4, help="meta-training LR (the paper's 1e-5 is for pretrained nets)"
    )
    ap.add_argument("--train-docs", type=int, default=8192)
    ap.add_argument(
        "--big-bank", type=int, default=1665, help="documents of the large online-adaptation bank"
    )
    ap.add_argument(
        "--smoke", action="store_true", help="tiny preset, small data, CPU: checks the plumbing only"
    )
    args = ap.parse_args()
    if args.smoke:
        args.preset, args.epochs, args.train_docs, args.big_bank = "tiny", 1, 256, 64
    data, runs = args.work / "data", args.work
    log: list[str] = []
    test_docs = max(args.big_bank, 32)
    run(
        [
            "synth",
            str(data),
            "--pretrain-docs",
            "256" if args.smoke else "512",
            "--train-docs",
            str(args.train_docs),
            "--val-docs",
            "32",
            "--test-docs",
            str(test_docs),
            "--relations",
            "1",
            "--values",
            "8",
        ],
        log,
    )
    common = [
        "--preset",
        args.preset,
        "--init",
        "scratch",
        "--train",
        str(data / "train.csv"),
        "--val",
        str(data / "val.csv"),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        "32",
        "--grad-accum",
        "1",
        "--codebook-update",
        "ema",
        "--retrieval-warmup",
        "20" if args.smoke else "600",
        "--no-progress",
    ]
    if not args.smoke:
        common += ["--lr", str(args.lr), "--lm-pretrain-epochs", "15"]
    run(
        [
            "train",
            *common,
            "--memory",
            "compressed",
            "--run-dir",
            str(runs / "mbc"),
            "--lm-corpus",
            str(data / "pretrain.csv"),
        ],
        log,
    )
    run(
        [
            "train",
            *common,
            "--memory",
            "full",
            "--run-dir",
            str(runs / "mac"),
            "--base-lm",
            str(runs / "mbc" / "base_lm"),
        ],
        log,
    )
    results = []
    for num_docs in (32, args.big_bank):
        for ckpt, memory, aggregation in (
            ("mbc", "compressed", "counts"),
            ("mbc", "compressed", "naive"),
            ("mac", "full", "counts"),
            ("mbc", "none", "counts"),
        ):
            out = run(
                [
                    "eval",
                    "--checkpoint",
                    str(runs / ckpt / "checkpoints" / "last"),
                    "--data",
                    str(data / "test.csv"),
                    "--num-docs",
                    str(num_docs),
                    "--memory",
                    memory,
                    "--aggregation",
                    aggregation,
                    "--out",
                    str(runs / "eval"),
                ],
                log,
            )
            results.append({"model": ckpt, **json.loads(out[out.index("{") :])})
    report = {
        "benchmark": "learner_scratch",
        "note": "models trained FROM SCRATCH on `mbc synth` data; not comparable to the papers' pretrained numbers",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commands": log,
        "train_examples_per_s": {"mbc": throughput(runs / "mbc"), "mac": throughput(runs / "mac")},
        "results": results,
    }
    out_path = (
        args.out or REPO / "bench" / "results" / f"learner_scratch_{args.preset}_{dt.date.today()}.json"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                "out": str(out_path),
                "results": [
                    {k: r[k] for k in ("model", "memory", "aggregation", "num_docs", "em", "f1")}
                    for r in results
                ],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
