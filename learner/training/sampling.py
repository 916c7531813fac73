"""Epoch ordering of training examples: deterministic in (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.

``rows`` shuffles examples. ``groups`` shuffles whole groups (an article, a synthetic bank) and
keeps each group's examples together and in order, like the reference code's group shuffling.

With several processes, every process computes the same epoch order and batches and takes its
share (:func:`shard_batches`); the *global* micro-batch index, not a process's own count, is what
positions and resumes are measured in, so a run can continue on another number of processes.
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


def shard_batches(batches: list[np.ndarray], rank: int, world: int) -> list[np.ndarray]:
    """Process ``rank``'s micro-batches out of ``world``: global batches rank, rank + world, ...

    The i-th micro-batch of every process together are global micro-batches i·world ...
    i·world + world - 1, so an optimizer step of ``world`` processes × A micro-batches covers the
    same global batches as one process with world·A micro-batches per step. Every process gets
    the same count (the remainder is dropped): they take optimizer steps together.
    """
    per_process = len(batches) // world
    return batches[rank : per_process * world : world]


def global_micro_index(local: int, rank: int, world: int) -> int:
    """Position in the epoch's batch list of process ``rank``'s ``local``-th micro-batch."""
    return local * world + rank
