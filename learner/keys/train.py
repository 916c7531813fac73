"""Training the key head (``mbc train-keys``): frozen model, features once, in-batch contrastive loss.

Features (no gradient through the model): every document of a QA file is encoded and quantized
through the one inference path (:class:`DocumentEncoder`, the model's own codebook), and its feature
is the mean of its codes' rows (:meth:`Codebook.code_rows`, what the store's codes give back); every
question's feature is the mean of its question-encoder vectors. The head then learns from
(question, its document) pairs: each step draws ``batch_size`` documents and one question of each,
and the symmetric InfoNCE loss over the batch's cosine logits (the other documents are the
negatives) trains both maps. A held-out share of the documents (with their questions) measures
recall@k against *every* document of the file, the way a bank is searched; every ``eval_every`` steps
its recall@8 is checked and the best check's weights are the ones kept (a few thousand pairs overfit a
head of this size quickly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from corpora.types import QADataset
from learner.inference.encode import DocumentEncoder
from learner.keys.head import KeyHead, encode_questions
from learner.model.mbc import MBCModel
from learner.text.tokenizers import Tokenizers

RECALL_AT = (1, 8, 32)
MAX_LOG_SCALE = math.log(100.0)  # the logit scale stops at 100 (CLIP's bound)


@dataclass(frozen=True)
class KeyTrainConfig:
    key_dim: int = 128
    hidden: int = 512
    steps: int = 600
    batch_size: int = 256  # documents per step (and one question of each)
    lr: float = 1e-3
    weight_decay: float = 0.01
    heldout: float = 0.1  # share of documents held out for recall (and for keeping the best head)
    eval_every: int = 50  # steps between held-out recall@8 checks; the best check's weights are kept
    seed: int = 0


@dataclass
class Features:
    docs: Tensor  # (N, D) mean code row of each document
    questions: Tensor  # (Q, D) mean question-encoder vector of each question
    gold: npt.NDArray[np.int64]  # (Q,) position of each question's document
    codes: npt.NDArray[np.int64]  # (N, K·G) the documents' codes


@torch.no_grad()
def features(
    model: MBCModel,
    tokenizers: Tokenizers,
    data: QADataset,
    device: torch.device,
    bf16: bool = False,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "",
) -> Features:
    """Features of every document and question of ``data`` (documents in the dataset's order)."""
    model.eval()
    encoder = DocumentEncoder.of_model(model, tokenizers, device, bf16)
    vectors = model.codebook.vectors.detach()  # (G·C, d)
    code_rows = model.codebook.code_rows(vectors).float()  # (G·C, D)
    docs = list(data.documents.values())
    position = {d.doc_id: i for i, d in enumerate(docs)}
    codes, doc_feats = [], []
    for i in tqdm(
        range(0, len(docs), batch_size), desc=f"{desc}documents", disable=not progress, leave=False
    ):
        c = encoder.encode_codes([d.text for d in docs[i : i + batch_size]], vectors)[1]  # (b, K·G)
        codes.append(c.cpu())
        doc_feats.append(code_rows[c.to(code_rows.device)].mean(1).cpu())  # (b, D)
    questions = [e.question for e in data.examples]
    q_feats = [
        encode_questions(model, encoder.texts, questions[i : i + batch_size], device, bf16).cpu()
        for i in tqdm(
            range(0, len(questions), batch_size), desc=f"{desc}questions", disable=not progress, leave=False
        )
    ]
    dim = int(code_rows.shape[1])
    return Features(
        docs=torch.cat(doc_feats) if doc_feats else torch.zeros(0, dim),
        questions=torch.cat(q_feats) if q_feats else torch.zeros(0, dim),
        gold=np.asarray([position[e.doc_id] for e in data.examples], dtype=np.int64),
        codes=torch.cat(codes).numpy() if codes else np.zeros((0, 0), np.int64),
    )


@torch.no_grad()
def recall(
    head: KeyHead, f: Features, questions: Sequence[int] | None = None, ks: Sequence[int] = RECALL_AT
) -> dict[str, float]:
    """recall@k of questions (positions; all by default) against every document of ``f``."""
    device = head.doc_mean.device
    qs = np.arange(len(f.gold)) if questions is None else np.asarray(questions, dtype=np.int64)
    if not len(qs):
        return {f"recall_at_{k}": 0.0 for k in ks}
    keys = head.doc_keys(f.docs.to(device))  # (N, d)
    ranks = []
    for i in range(0, len(qs), 1024):
        part = qs[i : i + 1024]
        scores = head.queries(f.questions[part].to(device)) @ keys.T  # (b, N)
        gold = torch.from_numpy(f.gold[part]).to(device)
        own = scores.gather(1, gold[:, None])  # (b, 1)
        ranks.append((scores > own).sum(1).cpu())  # ties count for the gold document
    rank = torch.cat(ranks)
    return {f"recall_at_{k}": float((rank < k).float().mean()) for k in ks}


def train_key_head(
    f: Features, cfg: KeyTrainConfig, device: torch.device, progress: bool = True
) -> tuple[KeyHead, dict[str, Any]]:
    """A key head trained on ``f``'s (question, document) pairs; its held-out recall and final loss."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    n = len(f.docs)
    asked = np.unique(f.gold)  # documents with at least one question
    perm = rng.permutation(asked)
    n_held = round(cfg.heldout * len(perm)) if len(perm) > 1 else 0
    held, train = set(perm[:n_held].tolist()), perm[n_held:]
    if len(train) < 2:
        raise ValueError(
            f"{len(train)} training documents with questions: the contrastive loss needs 2 or more"
        )
    by_doc: dict[int, list[int]] = {}
    for q, d in enumerate(f.gold.tolist()):
        by_doc.setdefault(d, []).append(q)
    train_q = [q for d in train.tolist() for q in by_doc[d]]
    head = KeyHead(int(f.docs.shape[1]), cfg.key_dim, cfg.hidden).to(device)
    head.set_stats(f.docs[train].to(device), f.questions[train_q].to(device))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    docs, questions = f.docs.to(device), f.questions.to(device)
    b = min(cfg.batch_size, len(train))
    target = torch.arange(b, device=device)
    losses: list[float] = []
    held_q = [q for d in sorted(held) for q in by_doc[d]]
    best: tuple[float, int, dict[str, Tensor]] | None = None  # (held-out recall@8, step, weights)
    curve: list[dict[str, float]] = []
    for step in tqdm(range(1, cfg.steps + 1), desc="key head", disable=not progress, leave=False):
        head.train()
        batch = rng.choice(train, size=b, replace=False)
        qs = [by_doc[d][rng.integers(len(by_doc[d]))] for d in batch.tolist()]
        doc_keys = head.doc_keys(docs[torch.from_numpy(batch).to(device)])  # (b, d)
        queries = head.queries(questions[torch.as_tensor(qs, device=device)])  # (b, d)
        logits = head.log_scale.clamp(max=MAX_LOG_SCALE).exp() * queries @ doc_keys.T  # (b, b)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if held_q and (step % cfg.eval_every == 0 or step == cfg.steps):  # keep the best held-out head
            head.eval()
            r8 = recall(head, f, held_q, ks=(8,))["recall_at_8"]
            curve.append(
                {"step": step, "loss": float(np.mean(losses[-cfg.eval_every :])), "heldout_recall_at_8": r8}
            )
            if best is None or r8 > best[0]:
                best = (r8, step, {k: v.detach().clone() for k, v in head.state_dict().items()})
    if best is not None:
        head.load_state_dict(best[2])
    head.eval()
    report: dict[str, Any] = {
        "documents": n,
        "questions": len(f.gold),
        "train_documents": len(train),
        "heldout_documents": len(held),
        "heldout_questions": len(held_q),
        "final_loss": float(np.mean(losses[-20:])),
        "first_loss": float(np.mean(losses[:20])),
        "heldout": recall(head, f, held_q) if held_q else None,  # against all n documents
        "best_step": best[1] if best is not None else cfg.steps,
        "curve": curve,
        "train": recall(head, f, train_q[:2000]),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
    }
    return head, report
