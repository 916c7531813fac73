"""What a training run is (:class:`RunSpec`), where it stands (:class:`TrainState`) and what it returns."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corpora.types import QADataset
from infra.logging import get_logger
from learner.errors import ConfigValueError
from learner.model.build import Init
from learner.model.config import ModelConfig, TrainConfig

log = get_logger("learner.training")


@dataclass
class TrainState:
    """Progress of a run, saved in every checkpoint (``trainer_state.json``)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # micro-batches of the current epoch already done, by all processes together
    examples: int = 0  # QA examples back-propagated so far, by all processes together
    best_val_loss: float = math.inf
    best_em: float = -1.0
    best_f1: float = -1.0
    bad_evals: int = 0  # evaluations since the validation loss last improved
    stopped_early: bool = False
    finished: bool = False
    processes: int = 1  # processes of the run that saved this state (resuming keeps its global batch)


@dataclass
class RunSpec:
    run_dir: Path
    model: ModelConfig
    train: TrainConfig
    init: Init = "scratch"
    lm_source: str | None = None  # local trained LM to use instead of building one
    lm_corpus: QADataset | None = None  # from-scratch base LM pretraining corpus
    # Debugging aid (`--trace-batches`): every process appends the ids of the examples of each
    # micro-batch it trains on to <run_dir>/trace/rank<R>.jsonl. Not saved in checkpoints.
    trace_batches: bool = False
    # `--init-from`: weights of another checkpoint (e.g. `mbc pretrain-amortizer`'s) to start from
    # (learner.training.init_from); ignored by --resume, which restores its own `last`.
    init_from: Path | None = None


@dataclass
class TrainResult:
    state: TrainState
    run_dir: Path
    last_metrics: dict[str, Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def keep_global_batch(train: TrainConfig, saved_processes: int, processes: int) -> TrainConfig:
    """``train`` with ``grad_accum`` rescaled so that a run saved by ``saved_processes`` processes
    keeps its micro-batches per optimizer step on ``processes`` processes.

    The global batch fixes the steps per epoch, the LR schedule and which global micro-batches a
    step covers, so a resumed run continues the same optimisation whatever hardware it runs on.
    """
    per_step = saved_processes * train.grad_accum
    if per_step % processes:
        raise ConfigValueError(
            f"the checkpoint was written by {saved_processes} process(es) with grad_accum "
            f"{train.grad_accum}: its {per_step} micro-batches per optimizer step cannot be split "
            f"over {processes} processes"
        )
    if saved_processes != processes:
        log.info(
            "resuming on another number of processes",
            saved_processes=saved_processes,
            processes=processes,
            grad_accum=per_step // processes,
        )
    return replace(train, grad_accum=per_step // processes)


def adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam over ``params``; fused when they all live on a GPU (one kernel for every tensor instead of
    about ten per tensor: a SmolLM2 run has ~600 trainable tensors, and the step is launch-bound)."""
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def warmup_then_constant(warmup: int) -> Any:
    """The LR factor of step ``s``: linear warm-up over ``warmup`` steps, then constant (the papers')."""
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
