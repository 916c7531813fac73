"""Epoch ordering of training examples: deterministic in (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.

``rows`` shuffles examples. ``groups`` shuffles whole groups (an article, a synthetic bank) and
keeps each group's examples together and in order, like the reference code's group shuffling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def epoch_order(groups: Sequence[str | None], shuffle: str, seed: int, epoch: int) -> np.ndarray:
    """Indices of all examples in this epoch's order."""
    rng = np.random.default_rng([seed, epoch])
    n = len(groups)
    if shuffle != "groups" or all(g is None for g in groups):
        return rng.permutation(n)
    members: dict[str | None, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g if g is not None else f"__row{i}", []).append(i)
    keys = list(members)
    return np.array([i for k in rng.permutation(len(keys)) for i in members[keys[k]]], dtype=np.int64)


def epoch_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Full batches only (the last partial one is dropped), unless there is less than one batch."""
    if len(order) <= batch_size:
        return [order] if len(order) else []
    return [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]


def micro_batches_per_epoch(num_batches: int, grad_accum: int) -> int:
    """Micro-batches used per epoch: a whole number of optimizer steps (at least one step)."""
    if num_batches < grad_accum:
        return num_batches
    return (num_batches // grad_accum) * grad_accum
