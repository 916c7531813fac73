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
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import host_machine, torch_machine  # noqa: E402

MBC = [sys.executable, "-c", "from mbc.cli import main; main()"]


def run(cmd: list[str], log: list[str]) -> str:
    """Run an `mbc` command, recording it; return stdout."""
    log.append("mbc " + shlex.join(cmd))
    proc = subprocess.run([*MBC, *cmd], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"command failed ({proc.returncode}): mbc {shlex.join(cmd)}")
    return proc.stdout


def start(cmd: list[str], log: list[str], logfile: Path) -> subprocess.Popen[bytes]:
    """Start an `mbc` command in the background, its output going to ``logfile``."""
    log.append("mbc " + shlex.join(cmd))
    logfile.parent.mkdir(parents=True, exist_ok=True)
    out = logfile.open("wb")
    return subprocess.Popen([*MBC, *cmd], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def say(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def wait_all(procs: dict[str, subprocess.Popen[bytes]], deadline: float) -> dict[str, str]:
    """Wait for every process; past ``deadline`` (monotonic) stop the rest with SIGTERM.

    Returns how each ended: "finished", "failed (rc)" or "stopped by the time budget".
    """
    ended: dict[str, str] = {}
    while len(ended) < len(procs):
        for name, p in procs.items():
            if name in ended or p.poll() is None:
                continue
            ended[name] = "finished" if p.returncode == 0 else f"failed ({p.returncode})"
            say(f"{name}: {ended[name]}")
        if time.monotonic() > deadline:
            for name, p in procs.items():
                if name not in ended:
                    p.terminate()
                    try:
                        p.wait(60)
                    except subprocess.TimeoutExpired:
                        p.kill()
                    ended[name] = "stopped by the time budget"
                    say(f"{name}: {ended[name]}")
        time.sleep(2)
    return ended


def machine() -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        **host_machine(),
        **torch_machine(),
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def throughput(run_dir: Path) -> float | None:
    rates = [
        r["examples_per_s"]
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if r.get("split") == "train" and r.get("examples_per_s")
    ]
    return statistics.mean(rates[1:] or rates) if rates else None  # the first epoch includes warm-up effects


def last_epoch(run_dir: Path) -> dict[str, Any]:
    """The last training-progress record of a run's metrics.jsonl (epoch, step), or {}."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in records if "step" in r]
    return steps[-1] if steps else {}


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
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument(
        "--lr", type=float, default=3e-4, help="meta-training LR (the paper's 1e-5 is for pretrained nets)"
    )
    ap.add_argument("--warmup-lr", type=float, default=1e-3, help="retrieval warm-up LR")
    ap.add_argument("--train-docs", type=int, default=8192)
    ap.add_argument(
        "--big-bank", type=int, default=1665, help="documents of the large online-adaptation bank"
    )
    ap.add_argument(
        "--train-budget-min",
        type=float,
        default=1e9,
        help="stop both trainings (SIGTERM) after this many minutes and evaluate their last checkpoints",
    )
    ap.add_argument("--eval-jobs", type=int, default=4, help="evaluations run at once")
    ap.add_argument(
        "--smoke", action="store_true", help="tiny preset, small data, CPU: checks the plumbing only"
    )
    args = ap.parse_args()
    if args.smoke:
        args.preset, args.epochs, args.train_docs, args.big_bank = "tiny", 1, 256, 64
    data, runs = args.work / "data", args.work
    log: list[str] = []
    test_docs = max(args.big_bank, 32)
    t_start = time.monotonic()
    say("synthesising data")
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
        common += [
            "--lr",
            str(args.lr),
            "--lm-pretrain-epochs",
            "15",
            "--retrieval-warmup-lr",
            str(args.warmup_lr),
        ]
    # MBC pretrains the from-scratch base LM; MAC reuses it, so MAC starts once it is saved and the
    # two then train side by side on the one GPU (their examples/s are therefore shared figures).
    say("training MBC (compressed memory), base LM first")
    procs = {
        "mbc": start(
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
            runs / "mbc.log",
        )
    }
    deadline = t_start + args.train_budget_min * 60
    base_lm = runs / "mbc" / "base_lm"
    while not (base_lm / "tokenizer.json").exists():
        if procs["mbc"].poll() is not None:
            sys.stderr.write((runs / "mbc.log").read_text()[-4000:])
            raise SystemExit("MBC training ended before its base LM was saved")
        time.sleep(2)
    time.sleep(5)  # the tokenizer is written last; let the files settle
    say("base LM saved; training MAC (full memory) alongside")
    procs["mac"] = start(
        ["train", *common, "--memory", "full", "--run-dir", str(runs / "mac"), "--base-lm", str(base_lm)],
        log,
        runs / "mac.log",
    )
    ended = wait_all(procs, deadline)
    for name in procs:
        say(f"{name} log tail:\n" + (runs / f"{name}.log").read_text()[-1500:])
    train_minutes = (time.monotonic() - t_start) / 60
    jobs = []
    for num_docs in (32, args.big_bank):
        for ckpt, memory, aggregation in (
            ("mbc", "compressed", "counts"),
            ("mbc", "compressed", "naive"),
            ("mac", "full", "counts"),
            ("mbc", "none", "counts"),
        ):
            jobs.append(
                (
                    ckpt,
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
                        "--batch-size",
                        "64",
                        "--out",
                        str(runs / "eval"),
                    ],
                )
            )
    say(f"evaluating ({len(jobs)} runs, {args.eval_jobs} at a time)")

    def evaluate(job: tuple[str, list[str]]) -> dict[str, Any]:
        ckpt, cmd = job
        out = run(cmd, log)
        row = {"model": ckpt, **json.loads(out[out.index("{") :])}
        say(
            f"eval {ckpt} {row.get('memory')} {row.get('aggregation')} n={row.get('num_docs')}: em={row.get('em')}"
        )
        return row

    with ThreadPoolExecutor(args.eval_jobs) as pool:
        results = list(pool.map(evaluate, jobs))
    report = {
        "benchmark": "learner_scratch",
        "note": "models trained FROM SCRATCH on `mbc synth` data; not comparable to the papers' pretrained numbers",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commands": log,
        "training": {name: {"ended": ended[name], "last_record": last_epoch(runs / name)} for name in procs},
        "training_minutes_wall": round(train_minutes, 2),
        "train_examples_per_s": {"mbc": throughput(runs / "mbc"), "mac": throughput(runs / "mac")},
        "train_examples_per_s_note": "MBC and MAC trained at the same time on one GPU: each figure is its share",
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
