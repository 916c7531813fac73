"""Meta-training (`mbc train`): the papers' offline training of the MBC (or MAC) model.

Loss = QA cross-entropy on the answer tokens + λ·VQ loss; each micro-batch's documents are the
memory bank of its questions. Adam with a constant LR after linear warmup, gradient clipping,
gradient accumulation, MAC's backprop dropout, accelerate for devices and bf16.

After every evaluation (each epoch, or every ``eval_every_steps`` optimizer steps) the run
writes ``metrics.jsonl``, the checkpoints ``last`` and — when improved — ``best-loss``,
``best-em``, ``best-f1``, and applies early stopping on the validation QA loss. ``--max-minutes``
stops in time to save ``last`` (:mod:`learner.training.deadline`). ``--resume``
continues from ``last`` exactly: model, optimizer, scheduler, RNG states and position in the
epoch are restored, and epoch orders are a function of (seed, epoch).

Several processes (``torchrun --nproc_per_node N mbc train ...``; accelerate picks gloo on CPU,
NCCL on GPUs) split every optimizer step's micro-batches between them
(:func:`learner.training.sampling.shard_batches`): N processes with ``grad_accum`` A take the same steps
over the same global batches as one process with N·A. Gradients are averaged by DDP; the codebook
is updated once per step from the statistics of all processes (:mod:`learner.model.codebook`);
evaluation decisions use process 0's numbers; only process 0 writes checkpoints, metrics and
``base_lm``. Positions are counted in global micro-batches, and resuming on another number of
processes keeps the global batch (``grad_accum`` is rescaled), so a checkpoint continues on any
process count that divides it.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, replace
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
from learner.eval.online import online_eval
from learner.model.build import arch_configs
from learner.model.gguf_source import identity_of
from learner.model.mbc import MBCModel
from learner.model.precision import place_model
from learner.text.batching import TextBatcher, collate_train
from learner.text.tokenizers import Tokenizers
from learner.training import spec as run_spec
from learner.training.codebook_sync import update_codebook
from learner.training.deadline import Deadline
from learner.training.init import build_for_training
from learner.training.sampling import (
    epoch_batches,
    epoch_order,
    global_micro_index,
    micro_batches_per_epoch,
    shard_batches,
)
from learner.training.spec import RunSpec, TrainResult, TrainState, keep_global_batch, seed_everything
from learner.training.warm_start import WarmStartData, warm_start

log = get_logger("learner.training.trainer")


def unwrap(model: Any) -> MBCModel:
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
        from accelerate import Accelerator, DistributedDataParallelKwargs, PartialState

        self.spec, self.train_ds, self.val_ds, self.progress = spec, train_ds, val_ds, progress
        self.ckpt_dir = spec.run_dir / "checkpoints"
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = spec.run_dir / "metrics.jsonl"
        cpu = not torch.cuda.is_available()
        # The process group first: it gives each process its own GPU before anything is built
        # there, and says which process is the main one. (The Accelerator itself needs the
        # mixed-precision setting, which a resumed run reads from its checkpoint.)
        procs = PartialState(cpu=cpu)
        opt_state: dict[str, Any] | None = None
        if resume:
            with procs.main_process_first():  # a crash leftover is restored by one process only
                last = resolve_checkpoint(self.ckpt_dir / "last")
            model, self.tok, meta = load_checkpoint(last)
            raw_state, opt_state, rng = load_training_state(last)
            self.state = TrainState(**raw_state)
            train = keep_global_batch(meta.train, self.state.processes, procs.num_processes)
            self.spec = replace(spec, model=meta.model, train=train, init=meta.init)  # type: ignore[arg-type]
            self.stored_lm_source, self.base_identity = meta.lm_source, meta.base_identity
        else:
            # every process builds the same model from the same seed; DDP then copies process 0's
            seed_everything(spec.train.seed)
            model, self.tok, self.stored_lm_source = build_for_training(
                spec, train_ds, progress, save_base_lm=procs.is_main_process
            )
            self.state = TrainState()
            self.base_identity = identity_of(self.stored_lm_source) if self.stored_lm_source else None
        self.state.processes = procs.num_processes
        tcfg = self.spec.train
        self.acc = Accelerator(
            mixed_precision=tcfg.mixed_precision,
            cpu=cpu,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        para = tcfg.memory == "paragraph"
        self.encoded = TextBatcher(self.tok, self.spec.model).encode(train_ds, paragraph=para)
        self.val_encoded = TextBatcher(self.tok, self.spec.model).encode(val_ds, paragraph=para)
        model.oracle_fraction = tcfg.oracle_fraction
        if tcfg.freeze_writer:  # before the warm-up and the optimizer: neither sees the writer
            model.freeze_writer()
        self.groups = [ex.group for ex in train_ds.examples]
        if not resume:
            data = WarmStartData(self.encoded, self.groups, self.tok)
            record = warm_start(model, data, tcfg, self.acc.device, self.acc.autocast, progress)
            if record is not None:
                self._log(record)
        n_batches = (
            len(epoch_batches(np.arange(len(self.encoded)), tcfg.loader_batch_size)) // self.acc.num_processes
        )
        self.micro_per_epoch = micro_batches_per_epoch(n_batches, tcfg.grad_accum)  # per process
        self.steps_per_epoch = max(1, math.ceil(self.micro_per_epoch / tcfg.grad_accum))
        warmup = math.ceil(tcfg.warmup_ratio * tcfg.epochs * self.steps_per_epoch)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # one codebook update per optimizer step, from all its micro-batches on all processes
        model.codebook.deferred = True
        # The retrieval warm-up leaves its last batch's gradients in .grad; the first step would
        # add them to its own (and, under DDP, average them in a different rounding order).
        model.zero_grad(set_to_none=True)
        model = place_model(model, self.acc.device, bf16_ok=tcfg.mixed_precision == "bf16")
        optimizer = run_spec.adam(self.params, tcfg.lr)  # after placement: fused on a GPU
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, run_spec.warmup_then_constant(warmup))
        self.deadline = Deadline(None)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state["optimizer"])
            self.scheduler.load_state_dict(opt_state["scheduler"])
            set_rng_state(rng)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def _save(self, name: str) -> None:
        t0 = time.monotonic()
        if self.acc.is_main_process:
            model = self.mbc_model
            meta = CheckpointMeta(
                self.spec.model,
                self.spec.train,
                self.spec.init,
                model.train_memory,
                arch_configs(model),
                self.stored_lm_source,
                self.state.step,
                self.base_identity,
            )
            opt = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
            save_checkpoint(self.ckpt_dir / name, model, self.tok, meta, asdict(self.state), opt)
        self.acc.wait_for_everyone()
        self.deadline.save_took(time.monotonic() - t0)

    def _from_main(self, *values: float) -> list[float]:
        """Process 0's ``values`` on every process. Every process evaluates its (identical) model,
        but GPU kernels may differ in the last bits, and the decisions taken on these numbers
        (which checkpoints to write, early stopping) must agree, or the processes would wait for
        each other at different points."""
        if self.acc.num_processes == 1:
            return list(values)
        from accelerate.utils import broadcast

        t = torch.tensor(values, dtype=torch.float64, device=self.acc.device)
        return [float(x) for x in broadcast(t, from_process=0).tolist()]

    @property
    def mbc_model(self) -> MBCModel:
        """The model being trained, outside its DDP/accelerate wrappers."""
        return unwrap(self.acc.unwrap_model(self.model))

    def evaluate(self) -> dict[str, Any]:
        """Validation loss and EM/F1; checkpoints; early-stopping bookkeeping."""
        tcfg, st = self.spec.train, self.state
        model = self.mbc_model
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
        loss, em, f1 = self._from_main(loss, report.summary["em"], report.summary["f1"])
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

    def _trace(self, idx: np.ndarray, micro: int) -> None:
        """With ``RunSpec.trace_batches``, record this process's micro-batch (see :class:`RunSpec`)."""
        if not self.spec.trace_batches:
            return
        record = {
            "epoch": self.state.epoch,
            "step": self.state.step + 1,  # the optimizer step its gradients go into
            "micro": micro,  # global micro-batch index in the epoch
            "rank": self.acc.process_index,
            "processes": self.acc.num_processes,
            "scored": min(self.spec.train.batch_size, len(idx)),  # the first ones; the rest are memory only
            "qa_ids": [self.train_ds.examples[i].qa_id for i in idx],
        }
        path = self.spec.run_dir / "trace" / f"rank{self.acc.process_index}.jsonl"
        path.parent.mkdir(exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def _micro_step(self, idx: np.ndarray, sync: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward and backward of one micro-batch; ``sync`` on the last one of an optimizer step.

        Before that, DDP's gradient all-reduce is skipped (``no_sync``): gradients accumulate
        locally and are averaged over processes once per step.
        """
        tcfg = self.spec.train
        batch = collate_train([self.encoded[i] for i in idx], self.tok.amort_pad_id, self.tok.lm_pad_id)
        n_grad = min(tcfg.batch_size, batch.size)
        context: AbstractContextManager[Any] = nullcontext() if sync else self.acc.no_sync(self.model)
        with context:
            with self.acc.autocast():
                out = self.model(batch.to(self.acc.device), n_grad=n_grad)
            self.acc.backward(out.loss / tcfg.grad_accum)
        self.state.examples += n_grad * self.acc.num_processes  # micro-batches are equal in size
        return out.qa_loss, out.vq_loss, out.perplexity  # device tensors: no host sync per micro-batch

    def _optimizer_step(self) -> None:
        self.acc.clip_grad_norm_(self.params, self.spec.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self._update_codebook()

    def _update_codebook(self) -> None:
        update_codebook(self.mbc_model.codebook, self.acc.num_processes)

    def _train_means(
        self, losses: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    ) -> tuple[float, float, float]:
        """Mean QA loss, VQ loss and perplexity of the epoch's micro-batches on all processes
        (every process ran as many micro-batches)."""
        if losses:
            t = torch.stack([torch.stack(c).double().mean() for c in zip(*losses, strict=True)])
        else:
            t = torch.zeros(3, dtype=torch.float64)
        t = t.to(self.acc.device)
        qa, vq, ppl = (float(x) for x in self.acc.reduce(t, reduction="mean").tolist())
        return qa, vq, ppl

    def run(self, max_steps: int | None = None, max_minutes: float | None = None) -> TrainResult:
        """Train to the end, early stopping, ``max_steps`` steps or ``max_minutes`` (saving ``last``)."""
        tcfg, st = self.spec.train, self.state
        self.deadline = Deadline(max_minutes)
        rank, world = self.acc.process_index, self.acc.num_processes
        last: dict[str, Any] = {}
        self.model.train()
        while st.epoch < tcfg.epochs and not st.stopped_early and not st.finished:
            order = epoch_order(self.groups, tcfg.shuffle, tcfg.seed, st.epoch)
            batches = shard_batches(epoch_batches(order, tcfg.loader_batch_size), rank, world)
            batches = batches[: self.micro_per_epoch]
            done = st.batch_in_epoch // world  # this process's micro-batches of the epoch already done
            bar = tqdm(
                total=len(batches),
                initial=done,
                desc=f"epoch {st.epoch + 1}/{tcfg.epochs}",
                disable=not (self.progress and self.acc.is_main_process),
                leave=False,
            )
            t0, losses, step_start = time.perf_counter(), [], time.monotonic()
            while done < len(batches):
                ends_step = (done + 1) % tcfg.grad_accum == 0 or done + 1 == len(batches)
                self._trace(batches[done], global_micro_index(done, rank, world))
                losses.append(self._micro_step(batches[done], sync=ends_step))
                done += 1
                st.batch_in_epoch = done * world
                bar.update(1)
                if not ends_step:
                    continue
                self._optimizer_step()
                self.deadline.step_took(time.monotonic() - step_start)
                if tcfg.eval_every_steps and st.step % tcfg.eval_every_steps == 0:
                    eval_start = time.monotonic()
                    last = self.evaluate()
                    self.deadline.eval_took(time.monotonic() - eval_start)
                step_start = time.monotonic()
                late = self._from_main(float(self.deadline.must_stop_at(st.step, tcfg.eval_every_steps)))
                if (max_steps is not None and st.step >= max_steps) or late[0] > 0:
                    self._save("last")
                    bar.close()
                    return TrainResult(st, self.spec.run_dir, last)
                if st.stopped_early:
                    break
            bar.close()
            if not st.stopped_early:
                qa, vq, ppl = self._train_means(losses)
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
                        "examples_per_s": len(losses) * tcfg.batch_size * world / secs if secs > 0 else None,
                    }
                )
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                if not tcfg.eval_every_steps:
                    last = self.evaluate()
            self._save("last")
        st.finished = True
        self._save("last")
        return TrainResult(st, self.spec.run_dir, last)
