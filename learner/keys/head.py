"""The key head: document keys from stored codes, question queries, in one d-dimensional space.

A document's key is an affine map of the mean of its codes' rows (:meth:`Codebook.code_rows`, (G·C, D)),
l2-normalised. Because the map is affine, that equals the normalised mean of a per-code **key book**
``doc(code_rows)`` (G·C, d) — exactly what the store's :func:`memory_store.doc_keys.document_keys`
computes from a document's codes and a book — so the store needs no model to hold learned keys.
A question's query is a small MLP of the mean of its question-encoder vectors (B, K, D), normalised.
Both sides standardize their input with statistics of the training features (buffers: SmolLM2's
hidden states carry a few huge channels that every text shares).

Saved as ``key_head.safetensors`` inside the checkpoint folder it was trained for
(:func:`save_key_head`, atomically); :func:`load_key_head` returns None where there is none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from learner.errors import CheckpointError
from learner.model.mbc import MBCModel
from learner.text.batching import TextBatcher, pad

FILE = "key_head.safetensors"
FORMAT = 1


class KeyHead(nn.Module):
    doc_mean: Tensor  # (D,) standardization of each side's input (buffers)
    doc_std: Tensor
    question_mean: Tensor
    question_std: Tensor

    def __init__(self, dim: int, key_dim: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.dim, self.key_dim, self.hidden = dim, key_dim, hidden
        self.doc = nn.Linear(dim, key_dim)
        self.question = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, key_dim))
        self.log_scale = nn.Parameter(torch.tensor(3.0))  # logits = e^s · cosine (InfoNCE temperature)
        for name in ("doc_mean", "question_mean"):
            self.register_buffer(name, torch.zeros(dim))
        for name in ("doc_std", "question_std"):
            self.register_buffer(name, torch.ones(dim))

    def set_stats(self, doc_features: Tensor, question_features: Tensor) -> None:
        """Standardization of both inputs from training features (N, D) and (Q, D)."""
        with torch.no_grad():
            for side, x in (("doc", doc_features), ("question", question_features)):
                getattr(self, f"{side}_mean").copy_(x.float().mean(0))
                getattr(self, f"{side}_std").copy_(x.float().std(0).clamp_min(1e-4))

    def doc_map(self, rows: Tensor) -> Tensor:
        """The affine document map of code rows or their means (..., D) -> (..., d), not normalised."""
        return self.doc((rows.float() - self.doc_mean) / self.doc_std)

    def key_book(self, code_rows: Tensor) -> Tensor:
        """Per-code key vectors (G·C, d) from code rows (G·C, D): a document's key is the normalised
        mean of its codes' entries (:func:`memory_store.doc_keys.document_keys`)."""
        return self.doc_map(code_rows)

    def doc_keys(self, mean_rows: Tensor) -> Tensor:
        """Keys (N, d) of documents whose codes' rows average to ``mean_rows`` (N, D)."""
        return F.normalize(self.doc_map(mean_rows), dim=-1)

    def queries(self, question_features: Tensor) -> Tensor:
        """Queries (B, d) of questions with mean question-encoder vectors (B, D)."""
        x = (question_features.float() - self.question_mean) / self.question_std
        return F.normalize(self.question(x), dim=-1)


def question_features(x: Tensor) -> Tensor:
    """The question side's input: the mean of the question encoder's K vectors, (B, K, D) -> (B, D)."""
    return x.float().mean(dim=1)


@torch.no_grad()
def encode_questions(
    model: MBCModel, texts: TextBatcher, questions: Sequence[str], device: torch.device, bf16: bool = False
) -> Tensor:
    """The question side's input (B, D) for questions: the question encoder over each question's *own*
    tokens (:meth:`TextBatcher.questions_own`) — with ``memory_query="reconstruct"`` the aggregator
    reads one fixed query for every question, which would give every question the same key."""
    ids, mask = pad(texts.questions_own(list(questions)), texts.tok.amort_pad_id)
    autocast: Any = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if bf16 and device.type == "cuda"
        else nullcontext()
    )
    with autocast:
        x = model.aggregator.question_encoder(ids.to(device), mask.to(device))  # (B, K, D)
    return question_features(x)


def save_key_head(head: KeyHead, checkpoint: Path, info: dict[str, Any]) -> Path:
    """Write ``checkpoint/key_head.safetensors`` atomically, with its shape and ``info`` (what it was
    trained on, its recall) in the metadata."""
    path = Path(checkpoint) / FILE
    tmp = path.with_name(f".{FILE}.tmp-{os.getpid()}")
    meta = {"format": FORMAT, "dim": head.dim, "key_dim": head.key_dim, "hidden": head.hidden}
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(tmp), metadata={"key_head": json.dumps(meta), "info": json.dumps(info)})
    os.replace(tmp, path)
    return path


def load_key_head(checkpoint: Path, device: torch.device | str = "cpu") -> KeyHead | None:
    """The key head trained for ``checkpoint``, or None when it has none."""
    path = Path(checkpoint) / FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["key_head"])
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: key head format {meta.get('format')} is not {FORMAT}")
        head = KeyHead(int(meta["dim"]), int(meta["key_dim"]), int(meta["hidden"]))
        head.load_state_dict(load_file(str(path)))
    except (KeyError, ValueError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable key head ({e})") from None
    return head.to(device).eval()


def key_head_info(checkpoint: Path) -> dict[str, Any] | None:
    """What a checkpoint's key head was trained on and measured (its metadata), or None."""
    path = Path(checkpoint) / FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("info", "{}"))  # type: ignore[no-any-return]
