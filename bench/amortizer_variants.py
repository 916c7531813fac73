"""Where does the amortization forward spend its time on the GPU, and which execution wins?

Profiling companion of ``bench/learner_gpu.py`` (issue 6): the same distilgpt2-shaped preset with
random weights, 1,024-token documents, and several ways to run the *same* network:

* ``autocast``   — fp32 weights under ``torch.autocast(bf16)``, HF's SDPA attention (the baseline);
* ``bf16``       — weights cast to bf16 once, no autocast (no per-call weight casts);
* ``bf16+compile`` — the same under ``torch.compile`` (fuses RMSNorm / residual / ReLU chains);
* ``flex``       — HF's flex-attention path (relative position bias as a score_mod) in bf16;
* ``flex+compile``.

Each variant's outputs are compared with the fp32 reference on one batch (max abs error), so a
fast but wrong variant shows up. A torch.profiler table of the baseline's top CUDA kernels is
printed and saved.

    python bench/amortizer_variants.py --out bench/results/amortizer_variants.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learner.model.build import build_model
from learner.model.fast_attention import set_attention
from learner.model.presets import get_preset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learner_gpu import timed  # the sibling benchmark's CUDA-event timer

GFLOP_PER_DOC = 51.5  # t5-small encoder + K-token decoder at 1,024 tokens (docs/DESIGN.md §6)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="distilgpt2")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-sizes", default="128,256,512")
    p.add_argument("--variants", default="autocast,bf16,bf16+compile,flex,flex+compile")
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("bench/results/amortizer_variants.json"))
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    preset = get_preset(args.preset)
    base = build_model(preset.model, "scratch", None).amortizer.cuda().eval()
    vocab = base.t5.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ref_ids = torch.randint(3, vocab, (8, args.seq_len), generator=gen).cuda()
    ref_mask = torch.ones_like(ref_ids)
    ref_mask[4:, args.seq_len // 2 :] = 0  # half the reference batch is padded
    with torch.no_grad():
        reference = base(ref_ids, ref_mask).float()  # (8, K, D) fp32, SDPA
    scale = reference.abs().max().item()
    result: dict[str, Any] = {
        "benchmark": "amortization forward: execution variants",
        "command": "python " + " ".join(sys.argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "preset": args.preset,
        "seq_len": args.seq_len,
        "reference_max_abs": scale,
        "variants": [],
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    # Profile of the baseline, one batch of 128.
    ids = torch.randint(3, vocab, (128, args.seq_len), generator=gen).cuda()
    mask = torch.ones_like(ids)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(2):
            base(ids, mask)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            base(ids, mask)
            torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70)
    print(table, flush=True)
    result["baseline_profile"] = table
    save()

    for variant in args.variants.split(","):
        try:
            model: Any = build_model(preset.model, "scratch", None).amortizer.cuda().eval()
            model.load_state_dict(base.state_dict())
            if variant.startswith("flex"):
                set_attention(model, "flex_attention")
            if variant != "autocast":
                model = model.to(torch.bfloat16)
            fwd: Any = model
            if variant.endswith("+compile"):
                fwd = torch.compile(model, dynamic=False)
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if variant == "autocast" else nullcontext()
            t0 = time.time()
            with torch.no_grad(), ctx:
                got = fwd(ref_ids, ref_mask).float()
            first_call_s = time.time() - t0
            row: dict[str, Any] = {
                "variant": variant,
                "max_abs_error_vs_fp32": (got - reference).abs().max().item(),
                "first_call_s": first_call_s,
                "runs": [],
            }
            for bs in map(int, args.batch_sizes.split(",")):
                ids = torch.randint(3, vocab, (bs, args.seq_len), generator=gen).pin_memory()
                mask = torch.ones_like(ids).pin_memory()

                def step(
                    ids: torch.Tensor = ids, mask: torch.Tensor = mask, fwd: Any = fwd, variant: str = variant
                ) -> None:
                    ctx = (
                        torch.autocast("cuda", dtype=torch.bfloat16)
                        if variant == "autocast"
                        else nullcontext()
                    )
                    with torch.no_grad(), ctx:
                        fwd(ids.cuda(non_blocking=True), mask.cuda(non_blocking=True)).float().cpu()

                try:
                    sec = timed(step, args.iters, 2)
                except torch.OutOfMemoryError:
                    row["runs"].append({"batch_size": bs, "error": "out of memory"})
                    torch.cuda.empty_cache()
                    continue
                run = {
                    "batch_size": bs,
                    "ms_per_batch": sec * 1000,
                    "docs_per_s": bs / sec,
                    "tflops": bs / sec * GFLOP_PER_DOC / 1000,
                    "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(),
                }
                row["runs"].append(run)
                print(variant, json.dumps(run), flush=True)
                torch.cuda.reset_peak_memory_stats()
            print(variant, "error vs fp32:", row["max_abs_error_vs_fp32"], flush=True)
        except Exception as e:  # a variant that does not run is a finding, not a crash
            row = {"variant": variant, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            print(variant, row["error"], flush=True)
        result["variants"].append(row)
        save()
        model = fwd = None
        torch.cuda.empty_cache()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
