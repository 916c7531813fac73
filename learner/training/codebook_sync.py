"""The codebook's once-per-optimizer-step update, the same on one process or several.

Forwards of a deferred :class:`learner.model.codebook.Codebook` only collect statistics; after the
optimizer step the trainer calls :func:`update_codebook`, which sums them over every micro-batch
on every process and applies their mean, re-seeding dead codes from all processes' vectors in
global micro-batch order, so a step is the same computation whatever the process count.
"""

from __future__ import annotations

from typing import Any

import torch

from learner.model.codebook import Codebook


@torch.no_grad()
def update_codebook(book: Codebook, world: int) -> None:
    """Apply the step's codebook statistics: means over all its micro-batches on all processes."""
    stats = book.take_pending()
    if stats is None:  # full memory (MAC): no codebook in the forward
        return
    c = stats.counts.numel()
    packed = torch.cat([stats.counts, stats.sums.flatten(), stats.counts.new_tensor([stats.batches])])
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(packed)  # sums; counts and batch counts are integers, so exact
    n = packed[-1]
    book.apply_stats(
        packed[:c] / n, packed[c:-1].view_as(stats.sums) / n, lambda: gather_pool(stats.pool, world)
    )
    if world > 1:
        broadcast_codebook(book)


def gather_pool(pool: list[torch.Tensor], world: int) -> torch.Tensor:
    """The step's context vectors of all processes, in global micro-batch order — what one
    process running the whole step would hold — to re-seed dead codes from."""
    if world == 1:
        return torch.cat(pool)
    import torch.distributed as dist

    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, [t.cpu() for t in pool])  # CPU: unpickled on another process
    ordered = [gathered[r][i] for i in range(len(pool)) for r in range(world)]  # global i·world + r
    return torch.cat(ordered).to(pool[0].device)


@torch.no_grad()
def broadcast_codebook(book: Codebook) -> None:
    """Every process applied the same reduced statistics; process 0's codebook is made
    authoritative anyway, so that last-bit differences between devices cannot accumulate."""
    import torch.distributed as dist

    tensors = [book.vectors.data, book.usage, book.ema_size, book.ema_sum]
    if book.space is not None:  # its running statistics saw each process's own documents
        tensors += [book.space.slot_mean, book.space.slot_var]
    for t in tensors:
        dist.broadcast(t, src=0)
