"""Terminal step of the pipelined worker: commit the Kafka offsets of batches the store holds.

It receives, in consumption order (``RunTaskInThreads`` keeps it), the outcome of each batch with
that batch's committable offsets: :class:`Stored` — its store transaction has committed — or
:class:`Abandoned` — the worker is stopping and the batch was not made durable. Offsets are
committed for stored batches only, and never again once one batch was abandoned: the abandoned
batch and every later one are consumed again after a restart or a rebalance (the store's
offsets decide where that starts), so nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arroyo.processing.strategies import ProcessingStrategy
from arroyo.types import FilteredPayload, Message

from infra.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Stored:
    """The batch's documents, codes and offsets are committed in the store."""

    batch_id: str


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The batch was dropped before its store transaction (shutdown or rebalance)."""

    size: int
    why: str


Outcome = Stored | Abandoned


class CommitStored(ProcessingStrategy[FilteredPayload | Outcome]):
    """Commit each stored batch's offsets, in order; nothing after an abandoned batch."""

    def __init__(self, commit: Callable[..., None]) -> None:
        self.commit = commit
        self.abandoned = False
        self.committed_batches = 0  # a count, not a list: the worker runs for months
        self.last_committed: str | None = None  # batch id of the newest commit, for logs

    def submit(self, message: Message[FilteredPayload | Outcome]) -> None:
        outcome: Any = message.payload
        if isinstance(outcome, Stored) and not self.abandoned:
            self.commit(dict(message.committable), force=True)
            self.committed_batches += 1
            self.last_committed = outcome.batch_id
            return
        if isinstance(outcome, Abandoned) and not self.abandoned:
            log.warning(
                "abandoning the in-flight batch; it will be consumed again",
                size=outcome.size,
                why=outcome.why,
            )
        if isinstance(outcome, FilteredPayload):
            return  # no step before this one filters; were one added, its offsets wait for a batch
        self.abandoned = True  # a stored batch after an abandoned one is not committed either

    def poll(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass
