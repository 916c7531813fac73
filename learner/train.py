"""Meta-training (`mbc train`): the papers' offline training of the MBC (or MAC) model.

Loss = QA cross-entropy on the answer tokens + λ·VQ loss; each micro-batch's documents are the
memory bank of its questions. Adam with a constant LR after linear warmup, gradient clipping,
gradient accumulation, MAC's backprop dropout, accelerate for devices and bf16.

After every evaluation (each epoch, or every ``eval_every_steps`` optimizer steps) the run
writes ``metrics.jsonl``, the checkpoints ``last`` and — when improved — ``best-loss``,
``best-em``, ``best-f1``, and applies early stopping on the validation QA loss. ``--resume``
continues from ``last`` exactly: model, optimizer, scheduler, RNG states and position in the
epoch are restored, and epoch orders are a function of (seed, epoch).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from infra.logging import get_logger
from learner.batching import Encoder, collate_train
from learner.build import Init, arch_configs
from learner.checkpoint import (
    CheckpointMeta,
    load_checkpoint,
    load_training_state,
    resolve_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from learner.config import ModelConfig, TrainConfig
from learner.data.types import QADataset
from learner.evaluate import online_eval
from learner.model import MBCModel, TrainBatch
from learner.sampling import epoch_batches, epoch_order, micro_batches_per_epoch
from learner.setup import build_for_training
from learner.tokenizer import Tokenizers
from learner.warmup import init_codebook_from_context, retrieval_warmup

log = get_logger("learner.train")
WARMUP_EPOCHS = 1_000_000  # epoch numbers whose orders feed the retrieval warm-up


@dataclass
class TrainState:
    """Progress of a run, saved in every checkpoint (``trainer_state.json``)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # micro-batches of the current epoch already done
    examples: int = 0  # QA examples back-propagated so far
    best_val_loss: float = math.inf
    best_em: float = -1.0
    best_f1: float = -1.0
    bad_evals: int = 0  # evaluations since the validation loss last improved
    stopped_early: bool = False
    finished: bool = False


@dataclass
class RunSpec:
    run_dir: Path
    model: ModelConfig
    train: TrainConfig
    init: Init = "scratch"
    lm_source: str | None = None  # local trained LM to use instead of building one
    lm_corpus: QADataset | None = None  # from-scratch base LM pretraining corpus


@dataclass
class TrainResult:
    state: TrainState
    run_dir: Path
    last_metrics: dict[str, Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_lambda(warmup: int) -> Any:
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _unwrap(model: Any) -> MBCModel:
    return model.module if hasattr(model, "module") else model  # type: ignore[no-any-return]


@torch.no_grad()
def validation_loss(
    model: MBCModel, encoded: list[Any], tok: Tokenizers, batch_size: int, device: torch.device
) -> float:
    """Mean QA loss over the validation set, each batch being its own bank (as in training)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(encoded), batch_size):
        items = encoded[i : i + batch_size]
        out = model(collate_train(items, tok.amort_pad_id, tok.lm_pad_id).to(device))
        total += float(out.qa_loss) * len(items)
        count += len(items)
    model.train(was)
    return total / max(count, 1)


class Trainer:
    """One training run in ``spec.run_dir``."""

    def __init__(
        self, spec: RunSpec, train_ds: QADataset, val_ds: QADataset, resume: bool, progress: bool = True
    ) -> None:
        from accelerate import Accelerator, DistributedDataParallelKwargs

        self.spec, self.train_ds, self.val_ds, self.progress = spec, train_ds, val_ds, progress
        self.ckpt_dir = spec.run_dir / "checkpoints"
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = spec.run_dir / "metrics.jsonl"
        opt_state: dict[str, Any] | None = None
        if resume:
            last = resolve_checkpoint(self.ckpt_dir / "last")
            model, self.tok, meta = load_checkpoint(last)
            raw_state, opt_state, rng = load_training_state(last)
            self.spec = replace(spec, model=meta.model, train=meta.train, init=meta.init)  # type: ignore[arg-type]
            self.state = TrainState(**raw_state)
            self.stored_lm_source = meta.lm_source
        else:
            seed_everything(spec.train.seed)
            model, self.tok, self.stored_lm_source = build_for_training(spec, train_ds, progress)
            self.state = TrainState()
        tcfg = self.spec.train
        self.acc = Accelerator(
            mixed_precision=tcfg.mixed_precision,
            cpu=not torch.cuda.is_available(),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        self.encoded = Encoder(self.tok, self.spec.model).encode(train_ds)
        self.val_encoded = Encoder(self.tok, self.spec.model).encode(val_ds)
        self.groups = [ex.group for ex in train_ds.examples]
        if not resume and tcfg.retrieval_warmup_steps > 0:
            self._warm_up(model)
        n_batches = (
            len(epoch_batches(np.arange(len(self.encoded)), tcfg.loader_batch_size)) // self.acc.num_processes
        )
        self.micro_per_epoch = micro_batches_per_epoch(n_batches, tcfg.grad_accum)
        self.steps_per_epoch = max(1, math.ceil(self.micro_per_epoch / tcfg.grad_accum))
        warmup = math.ceil(tcfg.warmup_ratio * tcfg.epochs * self.steps_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(self.params, lr=tcfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup))
        model = model.to(self.acc.device)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state["optimizer"])
            self.scheduler.load_state_dict(opt_state["scheduler"])
            set_rng_state(rng)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)

    def _warm_up(self, model: MBCModel) -> None:
        """Retrieval warm-up on training batches, in orders of their own (epochs 10^6, 10^6 + 1, ...)."""
        tcfg = self.spec.train
        steps = tcfg.retrieval_warmup_steps
        batches: list[np.ndarray] = []
        epoch = WARMUP_EPOCHS
        while len(batches) < max(steps, 128):
            batches += epoch_batches(
                epoch_order(self.groups, tcfg.shuffle, tcfg.seed, epoch), tcfg.batch_size
            )
            epoch += 1

        def collated(indices: list[np.ndarray]) -> Iterator[TrainBatch]:
            for idx in indices:
                yield collate_train([self.encoded[i] for i in idx], self.tok.amort_pad_id, self.tok.lm_pad_id)

        device = self.acc.device
        model.to(device)
        history = retrieval_warmup(
            model,
            collated(batches[:steps]),
            steps=steps,
            lr=tcfg.retrieval_warmup_lr,
            device=device,
            autocast=self.acc.autocast,
            progress=self.progress,
        )
        if model.train_memory == "compressed":
            with self.acc.autocast():
                init_codebook_from_context(model, list(collated(batches[:128])), device, tcfg.seed)
        if history:
            attn, qa = history[-1]
            log.info(
                "retrieval warm-up", steps=steps, attention_loss=round(attn, 3), own_doc_qa_loss=round(qa, 3)
            )
            self._log({"split": "warmup", "steps": steps, "attention_loss": attn, "own_doc_qa_loss": qa})

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def _save(self, name: str) -> None:
        if self.acc.is_main_process:
            model = _unwrap(self.acc.unwrap_model(self.model))
            meta = CheckpointMeta(
                self.spec.model,
                self.spec.train,
                self.spec.init,
                model.train_memory,
                arch_configs(model),
                self.stored_lm_source,
                self.state.step,
            )
            opt = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
            save_checkpoint(self.ckpt_dir / name, model, self.tok, meta, asdict(self.state), opt)
        self.acc.wait_for_everyone()

    def evaluate(self) -> dict[str, Any]:
        """Validation loss and EM/F1; checkpoints; early-stopping bookkeeping."""
        tcfg, st = self.spec.train, self.state
        model = _unwrap(self.acc.unwrap_model(self.model))
        with self.acc.autocast():
            loss = validation_loss(model, self.val_encoded, self.tok, tcfg.loader_batch_size, self.acc.device)
            report = online_eval(
                model,
                self.tok,
                self.val_ds,
                num_docs=tcfg.val_bank_docs,
                memory=model.train_memory,
                max_questions=tcfg.val_max_questions,
                batch_size=32,
                device=self.acc.device,
            )
        em, f1 = report.summary["em"], report.summary["f1"]
        record = {"split": "val", "step": st.step, "epoch": st.epoch, "val_loss": loss, "em": em, "f1": f1}
        if loss < st.best_val_loss - tcfg.min_delta:
            st.best_val_loss, st.bad_evals = loss, 0
            self._save("best-loss")
        else:
            st.bad_evals += 1
        if em > st.best_em:
            st.best_em = em
            self._save("best-em")
        if f1 > st.best_f1:
            st.best_f1 = f1
            self._save("best-f1")
        if tcfg.patience is not None and st.bad_evals > tcfg.patience:
            st.stopped_early = True
        record["bad_evals"] = st.bad_evals
        self._log(record)
        log.info("validation", **{k: v for k, v in record.items() if k != "split"})
        return record

    # -- the loop --------------------------------------------------------------------------------------

    def _micro_step(self, idx: np.ndarray) -> tuple[float, float, float]:
        tcfg = self.spec.train
        batch = collate_train([self.encoded[i] for i in idx], self.tok.amort_pad_id, self.tok.lm_pad_id)
        n_grad = min(tcfg.batch_size, batch.size)
        with self.acc.autocast():
            out = self.model(batch.to(self.acc.device), n_grad=n_grad)
        self.acc.backward(out.loss / tcfg.grad_accum)
        self.state.examples += n_grad
        return float(out.qa_loss), float(out.vq_loss), float(out.perplexity)

    def _optimizer_step(self) -> None:
        self.acc.clip_grad_norm_(self.params, self.spec.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        if self.acc.num_processes > 1:
            self._sync_codebook()

    @torch.no_grad()
    def _sync_codebook(self) -> None:
        """Codes are re-seeded and (EMA) updated inside forward, per process: rank 0's codebook wins."""
        import torch.distributed as dist

        book = _unwrap(self.acc.unwrap_model(self.model)).codebook
        for t in (book.vectors.data, book.usage, book.ema_size, book.ema_sum):
            dist.broadcast(t, src=0)

    def run(self, max_steps: int | None = None) -> TrainResult:
        tcfg, st = self.spec.train, self.state
        last: dict[str, Any] = {}
        self.model.train()
        while st.epoch < tcfg.epochs and not st.stopped_early and not st.finished:
            order = epoch_order(self.groups, tcfg.shuffle, tcfg.seed, st.epoch)
            batches = epoch_batches(order, tcfg.loader_batch_size)[
                self.acc.process_index :: self.acc.num_processes
            ]
            batches = batches[: self.micro_per_epoch]
            bar = tqdm(
                total=len(batches),
                initial=st.batch_in_epoch,
                desc=f"epoch {st.epoch + 1}/{tcfg.epochs}",
                disable=not (self.progress and self.acc.is_main_process),
                leave=False,
            )
            t0, losses = time.perf_counter(), []
            while st.batch_in_epoch < len(batches):
                losses.append(self._micro_step(batches[st.batch_in_epoch]))
                st.batch_in_epoch += 1
                bar.update(1)
                if st.batch_in_epoch % tcfg.grad_accum and st.batch_in_epoch < len(batches):
                    continue
                self._optimizer_step()
                if tcfg.eval_every_steps and st.step % tcfg.eval_every_steps == 0:
                    last = self.evaluate()
                if max_steps is not None and st.step >= max_steps:
                    self._save("last")
                    bar.close()
                    return TrainResult(st, self.spec.run_dir, last)
                if st.stopped_early:
                    break
            bar.close()
            if not st.stopped_early:
                qa, vq, ppl = (
                    (float(np.mean(c)) for c in zip(*losses, strict=True)) if losses else (0.0, 0.0, 0.0)
                )
                secs = time.perf_counter() - t0
                self._log(
                    {
                        "split": "train",
                        "step": st.step,
                        "epoch": st.epoch,
                        "qa_loss": qa,
                        "vq_loss": vq,
                        "perplexity": ppl,
                        "lr": self.scheduler.get_last_lr()[0],
                        "examples_per_s": len(losses) * tcfg.batch_size / secs if secs > 0 else None,
                    }
                )
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                if not tcfg.eval_every_steps:
                    last = self.evaluate()
            self._save("last")
        st.finished = True
        self._save("last")
        return TrainResult(st, self.spec.run_dir, last)
