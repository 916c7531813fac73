"""Making one prepared batch durable: dead letters once, then documents + offsets in ONE transaction.

Shared by the serial :class:`learner.worker.step.StoreStep` (which retries from the consumer
loop's polls) and the pipelined :class:`learner.worker.pipeline.PipelinedStore` (which retries
in its write thread). What the store says decides what happens (:mod:`memory_store.errors`):

* :class:`StoreUnavailable` — and a dead-letter topic that does not confirm delivery — is
  :data:`TRANSIENT`: the caller keeps the batch (never re-encoded) and tries again later;
* :class:`InvalidRecord` — some document cannot be stored: the batch is split
  (:func:`learner.worker.batch.find_refused`), each refused document is dead-lettered with the
  store's reason and its original bytes, and the rest is stored with the offsets;
* anything else escapes: the worker stops and says why.

:class:`StoreOutage` is the one place both steps keep the outage: how long to wait before the
next try (jittered exponential backoff) and the two log lines, "store unavailable" once when it
starts and "store reachable again" once when it ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from infra.logging import get_logger
from infra.retry import Backoff
from learner.worker.batch import DeadLetter, DeadLetterUndelivered, PreparedBatch, RawMessage, find_refused
from memory_store.errors import InvalidRecord, StoreUnavailable

log = get_logger(__name__)

# Errors that mean "the store (or the DLQ) is away for now", not "this batch is bad".
TRANSIENT = (StoreUnavailable, DeadLetterUndelivered)


class BatchSink(Protocol):
    """Everything the steps need from the worker: preparing, dead-lettering, storing, observing."""

    def prepare(
        self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]
    ) -> PreparedBatch: ...

    def dead_letter(self, letters: list[DeadLetter]) -> None: ...

    def write(self, batch: PreparedBatch) -> None: ...

    def after_store(self, batch: PreparedBatch) -> None: ...


class StoreOutage:
    """The store as one step sees it: up, or away for a number of failed attempts in a row."""

    def __init__(self, retry_max_s: float) -> None:
        self.backoff = Backoff(first_s=min(0.5, retry_max_s), max_s=retry_max_s)
        self.failures = 0

    @property
    def up(self) -> bool:
        return self.failures == 0

    def failed(self, error: BaseException) -> float:
        """One more failed attempt (logged when it is the first); seconds to wait before the next."""
        if self.up:
            log.warning("store unavailable; pausing consumption and retrying", error=first_line(error))
        self.failures += 1
        return self.backoff.delay(self.failures)

    def succeeded(self, batch_id: str) -> None:
        """An attempt went through (logged when it ends an outage)."""
        if not self.up:
            log.info("store reachable again; resuming", batch_id=batch_id)
        self.failures = 0


class DurableWrite:
    """One prepared batch on its way into the store; :meth:`attempt` may be called until it returns."""

    def __init__(self, sink: BatchSink, batch: PreparedBatch) -> None:
        self.sink, self.batch = sink, batch
        self.letters_sent = 0  # dead letters already delivered (never sent twice across retries)

    def attempt(self) -> None:
        """Deliver the dead letters not yet delivered, then write documents + offsets in one
        transaction (setting aside the records the store refuses). Raises :data:`TRANSIENT`
        errors for the caller to retry."""
        batch = self.batch
        self._send_letters()
        try:
            self.sink.write(batch)
        except InvalidRecord as e:
            self._set_aside_refused(e)

    def after_store(self) -> None:
        """Codebook maintenance; a store outage here only defers it to a later batch."""
        try:
            self.sink.after_store(self.batch)
        except TRANSIENT as e:
            log.warning("codebook maintenance deferred: store unavailable", error=first_line(e))

    def _send_letters(self) -> None:
        letters = self.batch.dead_letters
        if len(letters) > self.letters_sent:
            self.sink.dead_letter(letters[self.letters_sent :])
            self.letters_sent = len(letters)

    def _set_aside_refused(self, error: InvalidRecord) -> None:
        """Dead-letter the documents the store refuses, then store the rest with the offsets."""
        batch = self.batch
        log.warning(
            "the store refused a document; finding which", batch_id=batch.batch_id, error=first_line(error)
        )
        refused = find_refused(batch, self.sink.write)
        if not refused:
            raise error  # not a document's fault (every part alone was accepted): surface it
        batch.reject(refused)
        self._send_letters()
        self.sink.write(batch)  # the accepted documents again (no-ops) and the offsets, one transaction


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
