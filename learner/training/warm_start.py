"""What a fresh meta-training run does before its first step: the retrieval warm-up for random-init
encoders (:mod:`learner.training.warmup`), and a k-means codebook for a compressed run whose codebook
never saw a context vector (the paper's uniform(±1/C) start quantizes every document to the same few
codes). Batches come in orders of their own (epochs 10^6, 10^6 + 1, ...), so the run's epochs are
unchanged by it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from infra.logging import get_logger
from learner.model.config import TrainConfig
from learner.model.mbc import MBCModel, TrainBatch
from learner.text.batching import Encoded, collate_train
from learner.text.tokenizers import Tokenizers
from learner.training.sampling import epoch_batches, epoch_order
from learner.training.warmup import init_codebook_from_context, retrieval_warmup

log = get_logger("learner.training.warm_start")
WARMUP_EPOCHS = 1_000_000  # epoch numbers whose orders feed the warm start
KMEANS_BATCHES = 64  # training batches whose context vectors initialise a fresh codebook


@dataclass(frozen=True)
class WarmStartData:
    encoded: Sequence[Encoded]  # every training example, tokenized
    groups: Sequence[Any]  # each example's shuffle group (TrainConfig.shuffle)
    tok: Tokenizers

    def batches(self, tcfg: TrainConfig, count: int) -> list[np.ndarray]:
        """The first ``count`` warm-start batches (example indices)."""
        out: list[np.ndarray] = []
        epoch = WARMUP_EPOCHS
        while len(out) < count:
            out += epoch_batches(epoch_order(self.groups, tcfg.shuffle, tcfg.seed, epoch), tcfg.batch_size)
            epoch += 1
        return out[:count]

    def collated(self, indices: Sequence[np.ndarray]) -> Iterator[TrainBatch]:
        for idx in indices:
            yield collate_train([self.encoded[i] for i in idx], self.tok.amort_pad_id, self.tok.lm_pad_id)


def warm_start(
    model: MBCModel,
    data: WarmStartData,
    tcfg: TrainConfig,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
    progress: bool,
) -> dict[str, Any] | None:
    """Run what applies (module docstring); returns the metrics record of a retrieval warm-up, if any."""
    fresh_codebook = model.train_memory == "compressed" and float(model.codebook.usage.sum()) == 0
    if tcfg.retrieval_warmup_steps == 0 and not fresh_codebook:
        return None
    model.to(device)
    steps = tcfg.retrieval_warmup_steps
    batches = data.batches(tcfg, max(steps, 128 if steps else KMEANS_BATCHES))
    history: list[tuple[float, float]] = []
    if steps > 0:
        history = retrieval_warmup(
            model,
            data.collated(batches[:steps]),
            steps=steps,
            lr=tcfg.retrieval_warmup_lr,
            device=device,
            autocast=autocast,
            progress=progress,
        )
    if model.train_memory == "compressed" and (steps > 0 or fresh_codebook):
        sample = list(data.collated(batches[: 128 if steps else KMEANS_BATCHES]))
        with autocast():
            init_codebook_from_context(model, sample, device, tcfg.seed)
        log.info("codebook initialised by k-means", batches=len(sample))
    if not history:
        return None
    attn, qa = history[-1]
    log.info("retrieval warm-up", steps=steps, attention_loss=round(attn, 3), own_doc_qa_loss=round(qa, 3))
    return {"split": "warmup", "steps": steps, "attention_loss": attn, "own_doc_qa_loss": qa}
