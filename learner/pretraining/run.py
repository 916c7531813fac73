"""The amortizer pretraining run: model, data order, steps, metrics, deadline, checkpoints.

A run lives in ``--run-dir``: ``metrics.jsonl`` (one record per ``log_every`` steps: training
means since the last record and the held-out memory gap of
:func:`learner.pretraining.objective.memory_gap`) and ``checkpoints/last`` in the format
`mbc train` reads (:mod:`learner.checkpoint`; ``init`` "pretrained", trainable weights
only, the base LM's source and identity). ``mbc train --init-from <run-dir>`` starts
meta-training from it (:mod:`learner.training.init_from`).

Chunks are split once, deterministically: a seeded permutation puts ``eval_chunks`` of them aside
(never trained on); the others are visited in one seeded permutation per epoch. ``--resume``
restores model, optimizer, LR schedule, RNG states and the position in the epoch from ``last``.
``--max-minutes`` (:class:`learner.training.deadline.Deadline`) stops after the step that would
leave too little time for one more step, its evaluation and a save, and saves ``last``. On CUDA
the frozen base runs in bf16 (``base_bf16`` presets) under bf16 autocast; trainable weights
stay fp32.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from corpora.types import QADataset
from infra.logging import get_logger
from learner.checkpoint import (
    CheckpointMeta,
    load_checkpoint,
    load_training_state,
    resolve_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from learner.errors import CheckpointError, ConfigValueError
from learner.model.build import arch_configs
from learner.model.config import ModelConfig, TrainConfig
from learner.model.gguf_source import identity_of
from learner.model.mbc import MBCModel
from learner.model.precision import place_model
from learner.pretraining.batches import (
    Chunk,
    PretrainBatch,
    chunk_texts,
    collate_pretrain,
    query_batch,
    split_held_out,
    start_id,
)
from learner.pretraining.objective import PretrainConfig, memory_gap, pretrain_loss
from learner.training.deadline import Deadline
from learner.training.init import build_for_training
from learner.training.init_from import init_weights_from
from learner.training.spec import RunSpec, adam, seed_everything, warmup_then_constant

log = get_logger("learner.pretraining.run")


@dataclass
class PretrainState:
    step: int = 0
    epoch: int = 0
    position: int = 0  # training chunks of the current epoch already used
    chunks: int = 0  # training chunks of the data (a resumed run must see the same data)


@dataclass(frozen=True)
class PretrainResult:
    state: PretrainState
    run_dir: Path
    last_metrics: dict[str, Any]
    seconds_per_step: float


class AmortizerPretrainer:
    """One pretraining run in ``run_dir`` on ``texts`` (a fresh run, or ``resume`` from ``last``)."""

    def __init__(
        self,
        run_dir: Path,
        model_cfg: ModelConfig,
        cfg: PretrainConfig,
        texts: list[str],
        lm_source: str | None,
        resume: bool = False,
        progress: bool = True,
        device: torch.device | None = None,
        init_from: Path | None = None,
    ) -> None:
        """``init_from`` (a fresh run only): start from another checkpoint's weights, the quantizer's
        own excepted (``codebook.*``: a compressed run on a float-memory run's amortizer gets its
        codebook by k-means over that amortizer's vectors)."""
        self.run_dir, self.progress = Path(run_dir), progress
        self.ckpt = self.run_dir / "checkpoints" / "last"
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        opt_state: dict[str, Any] | None = None
        if resume:
            path = resolve_checkpoint(self.ckpt, "last")
            model, self.tok, meta = load_checkpoint(path, lm_source=lm_source)
            raw, opt_state, rng = load_training_state(path)
            if "pretrain" not in raw:
                raise CheckpointError(
                    f"{path}: not an amortizer-pretraining checkpoint (no 'pretrain' state)"
                )
            cfg = replace(PretrainConfig(**raw["pretrain"]), steps=cfg.steps)
            self.state = PretrainState(**raw["state"])
            self.lm_source, self.identity, self.model_cfg = meta.lm_source, meta.base_identity, meta.model
        else:
            seed_everything(cfg.seed)
            spec = RunSpec(self.run_dir, model_cfg, TrainConfig(memory=cfg.memory), "pretrained", lm_source)
            model, self.tok, self.lm_source = build_for_training(spec, QADataset("none"), progress)
            if init_from is not None:
                init_weights_from(model, init_from, self.lm_source or lm_source, skip=("codebook.",))
            self.identity = identity_of(self.lm_source) if self.lm_source else None
            self.state, self.model_cfg = PretrainState(), model_cfg
        self.cfg = cfg.validate()
        if cfg.doc_tokens > self.model_cfg.max_doc_tokens:
            raise ConfigValueError(
                f"--doc-tokens {cfg.doc_tokens} exceeds the preset's max_doc_tokens {self.model_cfg.max_doc_tokens}"
            )
        self._split(texts)
        model.codebook.deferred = False  # one process: the codebook updates in its own forward
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.model: MBCModel = place_model(model, self.device, bf16_ok=self.device.type == "cuda")
        self.optimizer = adam(self.params, cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_then_constant(cfg.warmup_steps)
        )
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state["optimizer"])
            self.scheduler.load_state_dict(opt_state["scheduler"])
            set_rng_state(rng)
        q_ids, q_mask = query_batch(self.tok, self.model_cfg.max_question_tokens)
        self.q_ids, self.q_mask = q_ids.to(self.device), q_mask.to(self.device)
        self.deadline = Deadline(None)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if not resume and cfg.memory == "compressed" and cfg.kmeans_chunks > 0:
            self._init_codebook()

    @torch.no_grad()
    def _init_codebook(self) -> None:
        """k-means codebook from the context vectors of the first ``kmeans_chunks`` training chunks
        (the paper's uniform(±1/C) start quantizes every document to the same few codes)."""
        chunks = self.train_set[: self.cfg.kmeans_chunks]
        b = max(self.cfg.batch_size, 32)
        self.model.eval()
        parts = []
        with self._autocast():
            for i in range(0, len(chunks), b):
                batch = self._batch(chunks[i : i + b])
                parts.append(self.model.amortize(batch.doc_ids, batch.doc_mask).float())
        z = torch.cat(parts)  # (N, K, D)
        self.model.train()
        self.model.codebook.init_from_context(z, self.cfg.batch_size * z.shape[1], self.cfg.seed)
        log.info("codebook initialised by k-means", vectors=int(z.shape[0] * z.shape[1]))

    def _split(self, texts: list[str]) -> None:
        cfg = self.cfg
        chunks = chunk_texts(texts, self.tok, cfg.doc_tokens, cfg.cont_tokens, cfg.objective)
        if len(chunks) <= cfg.eval_chunks:
            raise ConfigValueError(
                f"only {len(chunks)} chunks of >= 8 tokens in the data: need more than --eval-chunks "
                f"{cfg.eval_chunks} (held out) plus some to train on"
            )
        self.eval_set, self.train_set = split_held_out(chunks, cfg.eval_chunks, cfg.seed)
        if self.state.chunks and self.state.chunks != len(self.train_set):
            raise ConfigValueError(
                f"--data gives {len(self.train_set)} training chunks, the run being resumed had "
                f"{self.state.chunks}: resume with the same data and settings"
            )
        self.state.chunks = len(self.train_set)

    # -- pieces ----------------------------------------------------------------------------------------

    def _batch(self, chunks: list[Chunk]) -> PretrainBatch:
        pads = (self.tok.amort_pad_id, self.tok.lm_pad_id)
        return collate_pretrain(chunks, self.cfg.objective, start_id(self.tok.lm), *pads).to(self.device)

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _next_chunks(self) -> list[Chunk]:
        """The next ``batch_size`` training chunks of this epoch's order (a new epoch when it runs out)."""
        st, b = self.state, self.cfg.batch_size
        n = len(self.train_set)
        if st.position + min(b, n) > n:
            st.epoch, st.position = st.epoch + 1, 0
        order = np.random.default_rng([self.cfg.seed, st.epoch]).permutation(n)
        idx = order[st.position : st.position + b]
        st.position += len(idx)
        return [self.train_set[i] for i in idx]

    def evaluate(self) -> dict[str, float]:
        b = self.cfg.batch_size
        batches = [self._batch(self.eval_set[i : i + b]) for i in range(0, len(self.eval_set), b)]
        with self._autocast():
            return memory_gap(self.model, batches, self.q_ids, self.q_mask, self.cfg.memory)

    def save(self) -> None:
        t0 = time.monotonic()
        train = TrainConfig(memory=self.cfg.memory, lr=self.cfg.lr)  # what `mbc train` reads: memory
        meta = CheckpointMeta(
            self.model_cfg,
            train,
            "pretrained",
            self.cfg.memory,
            arch_configs(self.model),
            self.lm_source,
            self.state.step,
            self.identity,
        )
        state = {"pretrain": asdict(self.cfg), "state": asdict(self.state)}
        opt = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        save_checkpoint(self.ckpt, self.model, self.tok, meta, state, opt)
        self.deadline.save_took(time.monotonic() - t0)

    def _log(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    # -- the loop ------------------------------------------------------------------------------------

    def step(self) -> dict[str, torch.Tensor]:
        """One optimizer step; returns its training sums as device tensors (no host sync per step: the
        GPU keeps a queue of work while Python prepares the next batch)."""
        batch = self._batch(self._next_chunks())
        with self._autocast():
            out = pretrain_loss(self.model, batch, self.q_ids, self.q_mask, self.cfg.memory)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1
        numbers: dict[str, torch.Tensor] = {}
        for name, t in out.tasks.items():
            numbers |= {f"ce_{name}": t.ce, f"correct_{name}": t.correct, f"tokens_{name}": t.tokens}
        return numbers | {"vq_loss": out.vq_loss, "perplexity": out.perplexity}

    def run(self, max_minutes: float | None = None) -> PretrainResult:
        """Train to ``cfg.steps`` steps or the deadline; save ``last``; return the final numbers."""
        cfg, st = self.cfg, self.state
        self.deadline = Deadline(max_minutes)
        self.model.train()
        window: list[dict[str, torch.Tensor]] = []
        last: dict[str, Any] = {}
        took: list[float] = []
        bar = tqdm(total=cfg.steps, initial=st.step, desc="amortizer pretraining", disable=not self.progress)
        while st.step < cfg.steps:
            t0 = time.monotonic()
            window.append(self.step())
            took.append(time.monotonic() - t0)
            self.deadline.step_took(took[-1])
            bar.update(1)
            if st.step % cfg.log_every == 0 or st.step == cfg.steps:
                t1 = time.monotonic()
                last = self._record(window, took[-len(window) :])
                self.deadline.eval_took(time.monotonic() - t1)
                window = []
                tqdm.write(_summary(last))
            if self.deadline.must_stop_at(st.step, cfg.log_every):
                log.info("stopping for --max-minutes", step=st.step)
                break
        bar.close()
        self.save()
        return PretrainResult(st, self.run_dir, last, float(np.mean(took)) if took else math.nan)

    def _record(self, window: list[dict[str, torch.Tensor]], seconds: list[float]) -> dict[str, Any]:
        total = {k: float(torch.stack([w[k].float() for w in window]).sum()) for k in window[0]}
        means: dict[str, float] = {k: total[k] / len(window) for k in ("vq_loss", "perplexity")}
        for name in sorted(k[len("tokens_") :] for k in total if k.startswith("tokens_")):
            if total[f"tokens_{name}"] > 0:
                means[f"train_loss_{name}"] = total[f"ce_{name}"] / total[f"tokens_{name}"]
                means[f"train_acc_{name}"] = total[f"correct_{name}"] / total[f"tokens_{name}"]
        record: dict[str, Any] = {"split": "pretrain", "step": self.state.step, "epoch": self.state.epoch}
        record |= means | {"lr": self.scheduler.get_last_lr()[0], "seconds_per_step": float(np.mean(seconds))}
        record |= {f"heldout_{k}": v for k, v in self.evaluate().items()}
        self._log(record)
        return record


def _summary(record: dict[str, Any]) -> str:
    """One printed line per record: loss with memory / zero memory / another document's memory."""
    parts = [f"step {record['step']}"]
    for task in ("reconstruct", "continue"):
        own = record.get(f"heldout_own_loss_{task}")
        if own is None:
            continue
        zero, other = record[f"heldout_zero_loss_{task}"], record.get(f"heldout_shuffled_loss_{task}")
        acc = record[f"heldout_own_acc_{task}"]
        text = f"{task}: loss {own:.3f} (zero memory {zero:.3f}"
        text += f", other doc {other:.3f})" if other is not None else ")"
        parts.append(f"{text} acc {acc:.3f}")
    if "heldout_perplexity" in record:
        parts.append(f"held-out perplexity {record['heldout_perplexity']:.1f}")
    parts.append(f"{record['seconds_per_step']:.2f} s/step")
    return " | ".join(parts)
