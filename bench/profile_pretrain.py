"""Where a pretraining step's time goes, and how it scales with the batch (issue 19, item 4).

    python bench/profile_pretrain.py --base-lm <gguf> --data .data/reuters21578.jsonl.gz \
        --batches 64,128,256 --out bench/results/profile_pretrain.json

For each batch size: a fresh ``AmortizerPretrainer`` (the code ``mbc pretrain-amortizer`` runs) takes
``--warmup`` steps, then ``--steps`` timed steps (CUDA synchronised at both ends only); it records
seconds per step, chunks/s, peak GPU memory and an estimate of achieved TFLOP/s (6 × parameters ×
tokens through each network: the amortizer reads doc + summary tokens, the base LM the reconstruction
tokens). The first batch size is then profiled for ``--profile-steps`` steps with torch.profiler:
the top operators by device time, kernel launches per step, and the share of wall time the GPU was
busy. A step bound by launches (many tiny kernels) gains from bigger batches and CUDA graphs; one
bound by kernel time gains from fused kernels. Runs on CPU too (tiny preset) to check the script.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import torch_machine
from corpora.texts import load_texts
from infra.errors import MbcError
from learner.cli_options import with_code_space
from learner.model.presets import get_preset
from learner.pretraining.objective import PretrainConfig
from learner.pretraining.run import AmortizerPretrainer

H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA's H200 SXM figure without sparsity


def _texts(path: Path, fmt: str, limit: int) -> list[str]:
    if path.suffix == ".gz":  # the device copy of Reuters travels gzipped
        plain = Path(tempfile.mkdtemp()) / path.stem
        with gzip.open(path, "rb") as src, plain.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        path = plain
    return load_texts(path, fmt)[:limit]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _flops_per_step(trainer: AmortizerPretrainer, batch: int, doc_tokens: int) -> float:
    """6 × N × tokens for the amortizer (doc + K summary tokens) and the base LM (doc tokens + start)."""
    model = trainer.model
    lm_params = sum(p.numel() for p in model.lm.parameters())
    k = trainer.model_cfg.num_vectors
    return 6.0 * lm_params * batch * ((doc_tokens + k) + (doc_tokens + 1))


def measure(args: argparse.Namespace, batch: int, profile: bool) -> dict[str, Any]:
    model_cfg = with_code_space(get_preset(args.preset).model, args.codes_per_vector, args.code_dim, True)
    cfg = PretrainConfig(
        memory=args.memory,
        objective="reconstruct",
        steps=10**6,
        batch_size=batch,
        lr=3e-4,
        warmup_steps=10,
        doc_tokens=args.doc_tokens,
        log_every=10**6,
        eval_chunks=8,
        kmeans_chunks=0,
    ).validate()
    run_dir = Path(tempfile.mkdtemp(prefix="profile-"))
    trainer = AmortizerPretrainer(run_dir, model_cfg, cfg, args.texts, args.base_lm, progress=False)
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        trainer.step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.step()
    _sync(device)
    secs = (time.perf_counter() - t0) / args.steps
    flops = _flops_per_step(trainer, batch, args.doc_tokens)
    row: dict[str, Any] = {
        "batch": batch,
        "seconds_per_step": round(secs, 4),
        "chunks_per_s": round(batch / secs, 1),
        "tflops_estimate": round(flops / secs / 1e12, 2),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda"
        else None,
    }
    if device.type == "cuda":
        row["share_of_bf16_peak"] = round(row["tflops_estimate"] / H200_BF16_DENSE_TFLOPS, 4)
    if profile:
        row["profile"] = _profile(trainer, args.profile_steps)
    shutil.rmtree(run_dir, ignore_errors=True)
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def _profile(trainer: AmortizerPretrainer, steps: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    cuda = trainer.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(trainer.device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(steps):
            trainer.step()
        _sync(trainer.device)
    wall = (time.perf_counter() - t0) / steps
    events = prof.key_averages()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    top = sorted(events, key=lambda e: getattr(e, key, 0.0), reverse=True)[:25]
    kernels = [e for e in prof.events() if cuda and e.device_type == torch.autograd.DeviceType.CUDA]
    busy_us = sum(e.device_time for e in kernels) if kernels else 0.0
    return {
        "steps": steps,
        "wall_s_per_step": round(wall, 4),
        "kernels_per_step": round(len(kernels) / steps) if cuda else None,
        "gpu_busy_share": round(busy_us / 1e6 / steps / wall, 3) if cuda else None,
        "top_ops": [
            {
                "op": e.key,
                "ms_per_step": round(getattr(e, key, 0.0) / 1e3 / steps, 2),
                "calls_per_step": e.count // steps,
            }
            for e in top
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--base-lm", default=None)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--format", default="reuters")
    ap.add_argument("--max-texts", type=int, default=3000)
    ap.add_argument("--memory", default="compressed", choices=("compressed", "full"))
    ap.add_argument("--codes-per-vector", type=int, default=4)
    ap.add_argument("--code-dim", type=int, default=32)
    ap.add_argument("--doc-tokens", type=int, default=128)
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/profile_pretrain.json"))
    args = ap.parse_args()
    args.texts = _texts(args.data, args.format, args.max_texts)
    rows = []
    for i, b in enumerate(int(x) for x in args.batches.split(",")):
        try:
            rows.append(measure(args, b, profile=i == 0))
        except torch.OutOfMemoryError:
            rows.append({"batch": b, "error": "out of GPU memory"})
            torch.cuda.empty_cache()
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "profile"}), flush=True)
    if rows and "profile" in rows[0]:
        prof = rows[0]["profile"]
        print(
            f"profile at batch {rows[0]['batch']}: {prof['wall_s_per_step']} s/step, "
            f"{prof['kernels_per_step']} kernels/step, GPU busy {prof['gpu_busy_share']}"
        )
        for op in prof["top_ops"]:
            print(f"  {op['ms_per_step']:9.2f} ms  x{op['calls_per_step']:<6} {op['op'][:90]}")
    result = {
        "command": " ".join(sys.argv),
        "date": dt.date.today().isoformat(),
        "machine": torch_machine(),
        "preset": args.preset,
        "memory": args.memory,
        "doc_tokens": args.doc_tokens,
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
