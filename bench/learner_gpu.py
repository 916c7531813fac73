"""GPU benchmark of the learner: documents/s of online adaptation (amortize + quantize) and the
latency of aggregating a question over banks of 10^3 .. 10^7 documents, counts vs naive.

    python bench/learner_gpu.py --out bench/results/learner_gpu.json

Random weights at the chosen preset (speed does not depend on training). Timings use CUDA
events after warm-up, with synchronisation; "GPU-side" includes host→device copy of the token
ids, the T5 amortization forward, the per-token MLPs and nearest-code search, and the device→host
copy of the codes — everything the worker does per batch except tokenization and the store write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import host_machine, torch_machine
from learner.model.build import build_model
from learner.model.codebook_math import nearest_codes
from learner.model.memory import Memory, memory_from_counts
from learner.model.presets import get_preset

T5_SMALL_GFLOP_PER_DOC = 51.5  # docs/DESIGN.md §6: the t5-small encoder+decoder forward at 1,024 tokens
H200_BF16_PEAK_TFLOPS = 790.0


def machine() -> dict[str, Any]:
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        smi = ""
    return {**host_machine(), **torch_machine(), "nvidia_smi": smi, "cuda": torch.version.cuda}


def timed(fn: Any, iters: int, warmup: int) -> float:
    """Median seconds per call of ``fn`` (CUDA events, synchronised)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    times.sort()
    return times[len(times) // 2]


def bench_adaptation(model: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    vocab = model.amortizer.t5.config.vocab_size if hasattr(model.amortizer, "t5") else 32000
    rows = []
    book = model.codebook.vectors.detach().float()
    for dtype in args.dtypes:
        # fp32 / bf16: the model's own forward (bf16 = autocast, HF's T5 sdpa path: the baseline).
        # fast-bf16[+compile]: learner.model.fast_attention.inference_amortizer on a copy, as the worker runs it.
        amortize: Any = model.amortizer
        if dtype.startswith("fast"):
            import copy

            from learner.model.fast_attention import inference_amortizer

            amortize = inference_amortizer(
                copy.deepcopy(model.amortizer),
                torch.device("cuda"),
                bf16=True,
                compile=dtype.endswith("+compile"),
            )
        for bs in args.batch_sizes:
            ids_host = torch.randint(3, vocab, (bs, args.seq_len), pin_memory=True)
            mask_host = torch.ones(bs, args.seq_len, dtype=torch.long, pin_memory=True)

            def step(
                ids_host: torch.Tensor = ids_host,
                mask_host: torch.Tensor = mask_host,
                dtype: str = dtype,
                amortize: Any = amortize,
            ) -> None:
                ids = ids_host.to("cuda", non_blocking=True)
                mask = mask_host.to("cuda", non_blocking=True)
                ctx = (
                    torch.autocast("cuda", dtype=torch.bfloat16)
                    if dtype == "bf16"
                    else torch.autocast("cuda", enabled=False)
                )
                with torch.no_grad(), ctx:
                    z = amortize(ids, mask).float()  # (B, K, D)
                codes = nearest_codes(z.reshape(-1, z.shape[-1]), book)  # (B*K,)
                codes.cpu()

            try:
                sec = timed(step, args.iters, args.warmup)
            except torch.OutOfMemoryError:
                rows.append({"dtype": dtype, "batch_size": bs, "error": "out of memory"})
                torch.cuda.empty_cache()
                continue
            docs_s = bs / sec
            row = {
                "dtype": dtype,
                "batch_size": bs,
                "seq_len": args.seq_len,
                "ms_per_batch": sec * 1000,
                "docs_per_s": docs_s,
                "achieved_tflops": docs_s * T5_SMALL_GFLOP_PER_DOC / 1000,
                "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            torch.cuda.reset_peak_memory_stats()
    return rows


def bench_aggregation(model: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Counts path for every bank size first, then the naive path upwards until it fails.

    A failure of the naive path can leave the CUDA context unusable (an illegal address inside
    attention over ~10^7 keys was seen), so nothing runs on the GPU after it.
    """
    cfg = model.config
    k, c = cfg.num_vectors, cfg.codebook_size
    books = {1: model.codebook.vectors.detach().float()}
    gen = torch.Generator().manual_seed(0)
    q_ids = torch.randint(3, 1000, (1, 32), device="cuda")
    q_mask = torch.ones_like(q_ids)
    rows: list[dict[str, Any]] = []
    for n_docs in args.banks:
        # Counts of n_docs * K uniformly drawn codes, without materialising 10^8 codes on the host.
        flat = torch.distributions.Multinomial(n_docs * k, probs=torch.full((c,), 1.0 / c)).sample().long()
        nz = torch.nonzero(flat).squeeze(1)
        count_rows = torch.stack([torch.ones_like(nz), nz, flat[nz]], 1).numpy()  # (R, 3) version, code, n

        def counts_path(count_rows: Any = count_rows) -> None:
            mem = memory_from_counts(count_rows, books, torch.device("cuda"))
            with torch.no_grad():
                model.expander(model.aggregator(q_ids, q_mask, mem))

        row = {
            "documents": n_docs,
            "distinct_codes": int(nz.numel()),
            "counts_ms": timed(counts_path, args.iters, 2) * 1000,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows:
        n_docs = row["documents"]
        codes_gpu = torch.randint(0, c, (n_docs, k), generator=gen).cuda()

        def naive_path(codes_gpu: torch.Tensor = codes_gpu) -> None:
            # Every stored code decoded on the GPU (what learner.model.memory.memory_naive builds), no collapse.
            mem = Memory(books[1][codes_gpu.reshape(-1)])  # (N*K, D)
            with torch.no_grad():
                model.expander(model.aggregator(q_ids, q_mask, mem))

        try:
            row["naive_ms"] = timed(naive_path, max(3, args.iters // 3), 1) * 1000
            print(json.dumps(row), flush=True)
        except Exception as e:  # OOM or a kernel failure: the naive path stops here
            row["naive_ms"] = None
            row["naive_error"] = type(e).__name__ + ": " + str(e).strip().splitlines()[0][:160]
            print(json.dumps(row), flush=True)
            break
    for row in rows:
        row.setdefault("naive_ms", None)
        row.setdefault("naive_error", "not run: the naive path failed at a smaller bank")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="distilgpt2")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64, 128, 256])
    p.add_argument(
        "--dtypes", type=lambda s: s.split(","), default=["fp32", "bf16", "fast-bf16", "fast-bf16+compile"]
    )
    p.add_argument(
        "--banks",
        type=lambda s: [int(float(x)) for x in s.split(",")],
        default=[10**3, 10**4, 10**5, 10**6, 10**7],
    )
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--skip-adaptation", action="store_true")
    p.add_argument("--skip-aggregation", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/results/learner_gpu.json"))
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    preset = get_preset(args.preset)
    t0 = time.time()
    model = build_model(preset.model, "scratch", None).cuda().eval()
    print(f"built {args.preset} in {time.time() - t0:.1f} s", flush=True)
    result: dict[str, Any] = {
        "benchmark": "learner GPU: online adaptation documents/s and aggregation latency",
        "command": "python " + " ".join(sys.argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "preset": args.preset,
        "weights": "random (built from config); speed does not depend on training",
        "flop_model": f"{T5_SMALL_GFLOP_PER_DOC} GFLOP per 1,024-token document (t5-small), peak {H200_BF16_PEAK_TFLOPS} TFLOP/s bf16",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.skip_adaptation:
        result["adaptation"] = bench_adaptation(model, args)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.skip_aggregation:
        result["aggregation"] = bench_aggregation(model, args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
