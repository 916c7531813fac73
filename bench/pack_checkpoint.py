"""Pack a checkpoint for the way back from the GPU machine: float weights in bf16, split in pieces.

`$OUT` returns at most 8 files of 16 MiB; a SmolLM2 checkpoint's trainable weights are ~81 MiB in
fp32. This writes ``<out>/<name>.tgz.part-aa, -ab, ...`` (15 MB each) holding the checkpoint folder
without ``optimizer.pt`` and with ``model.safetensors`` in bf16 (integer buffers kept). Loading a
bf16 file into the fp32 model casts on copy, so the unpacked folder loads as any checkpoint:

    cat <name>.tgz.part-* | tar xz -C <dir>      # -> <dir>/<name>/

    python bench/pack_checkpoint.py /tmp/runs/qa-compressed/checkpoints/last $OUT/ckpt --name qa-compressed
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

PIECE = 15_000_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--name", default="checkpoint")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / args.name
        shutil.copytree(args.checkpoint, folder, ignore=shutil.ignore_patterns("optimizer.pt"))
        weights = folder / "model.safetensors"
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(weights))
        state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
        save_file(state, str(weights), metadata=metadata)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(folder, arcname=args.name)
    data = buf.getvalue()
    args.out.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(0, len(data), PIECE):
        suffix = chr(ord("a") + i // PIECE // 26) + chr(ord("a") + i // PIECE % 26)
        path = args.out / f"{args.name}.tgz.part-{suffix}"
        path.write_bytes(data[i : i + PIECE])
        names.append(path.name)
    print(json.dumps({"bytes": len(data), "pieces": names}))


if __name__ == "__main__":
    main()
