"""The arroyo strategy that makes a batch durable, then commits its Kafka offsets.

Order, for every batch (STYLE.md: side effects first, offset commit last):

1. dead letters produced to the DLQ topic and flushed;
2. documents + packed codes + consumed offsets written to the store in ONE transaction
   (idempotent by document id: a batch seen again after a crash changes nothing);
3. codebook statistics observed (and a new version published when due);
4. Kafka offsets committed.

A crash between 2 and 4 means the batch is consumed again and written again as a no-op.

What the store says decides what happens next (:mod:`memory_store.errors`):

* :class:`StoreUnavailable` (unreachable, read-only, busy, timed out) — and a dead-letter topic
  that does not confirm delivery — the prepared batch is kept (not re-encoded) and retried with
  jittered exponential backoff (:class:`infra.retry.Backoff`); meanwhile ``submit`` raises
  ``MessageRejected``, which makes arroyo pause the partitions: backpressure instead of a crash
  loop, and nothing is lost;
* :class:`InvalidRecord` — some document cannot be stored: the batch is split
  (:func:`learner.worker.batch.find_refused`) and each refused document is dead-lettered with the
  store's reason and its original bytes; the rest is stored with the offsets, and the stream goes on;
* anything else escapes: the worker stops and says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from arroyo.processing.strategies import MessageRejected, ProcessingStrategy
from arroyo.types import BaseValue, Message

from infra.logging import get_logger
from infra.retry import Backoff
from learner.worker.batch import DeadLetter, DeadLetterUndelivered, PreparedBatch, RawMessage, find_refused
from memory_store.errors import InvalidRecord, StoreUnavailable

log = get_logger(__name__)

# Errors that mean "the store (or the DLQ) is away for now", not "this batch is bad".
TRANSIENT = (StoreUnavailable, DeadLetterUndelivered)


class BatchSink(Protocol):
    """Everything the step needs from the worker: preparing, dead-lettering, storing, observing."""

    def prepare(
        self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]
    ) -> PreparedBatch: ...

    def dead_letter(self, letters: list[DeadLetter]) -> None: ...

    def write(self, batch: PreparedBatch) -> None: ...

    def after_store(self, batch: PreparedBatch) -> None: ...


Commit = Callable[..., None]


def _raw(value: BaseValue[Any]) -> RawMessage:
    payload = value.payload
    partition = value.partition  # type: ignore[attr-defined]
    return RawMessage(
        topic=partition.topic.name,
        partition=partition.index,
        offset=value.offset,  # type: ignore[attr-defined]
        key=payload.key,
        value=payload.value,
        timestamp=getattr(value, "timestamp", None),
    )


class StoreStep(ProcessingStrategy[list[BaseValue[Any]]]):
    """Terminal step: prepare, write durably, commit. Holds at most one batch."""

    def __init__(self, sink: BatchSink, commit: Commit, retry_max_s: float = 30.0) -> None:
        self.sink, self.commit, self.retry_max_s = sink, commit, retry_max_s
        self.backoff = Backoff(first_s=min(0.5, retry_max_s), max_s=retry_max_s)
        self._pending: Message[list[BaseValue[Any]]] | None = None
        self._prepared: PreparedBatch | None = None
        self._letters_sent = 0  # dead letters of the prepared batch already delivered
        self._next_try = 0.0
        self._failures = 0
        self._closed = False
        self.store_up = True

    def submit(self, message: Message[list[BaseValue[Any]]]) -> None:
        assert not self._closed
        if self._pending is not None:
            raise MessageRejected()  # still retrying the previous batch: pause consumption
        self._pending = message
        self._attempt()

    def poll(self) -> None:
        if self._pending is not None and time.monotonic() >= self._next_try:
            self._attempt()

    def _attempt(self) -> None:
        message = self._pending
        assert message is not None
        committable = {(p.topic.name, p.index): o for p, o in message.committable.items()}
        try:
            if self._prepared is None:
                self._prepared = self.sink.prepare([_raw(v) for v in message.payload], committable)
            batch = self._prepared
            self._send_letters(batch)
            try:
                self.sink.write(batch)
            except InvalidRecord as e:
                self._set_aside_refused(batch, e)
        except TRANSIENT as e:
            self._backoff(e)
            return
        if not self.store_up:
            log.info("store reachable again; resuming", batch_id=batch.batch_id)
        self.store_up, self._failures = True, 0
        try:
            self.sink.after_store(batch)
        except TRANSIENT as e:  # codebook publication can wait for the next batch
            log.warning("codebook maintenance deferred: store unavailable", error=_first_line(e))
        self.commit(dict(message.committable), force=True)
        self._pending, self._prepared, self._letters_sent = None, None, 0

    def _send_letters(self, batch: PreparedBatch) -> None:
        if len(batch.dead_letters) > self._letters_sent:
            self.sink.dead_letter(batch.dead_letters[self._letters_sent :])
            self._letters_sent = len(batch.dead_letters)

    def _set_aside_refused(self, batch: PreparedBatch, error: InvalidRecord) -> None:
        """Dead-letter the documents the store refuses, then store the rest with the offsets."""
        log.warning(
            "the store refused a document; finding which", batch_id=batch.batch_id, error=_first_line(error)
        )
        refused = find_refused(batch, self.sink.write)
        if not refused:
            raise error  # not a document's fault (every part alone was accepted): surface it
        batch.reject(refused)
        self._send_letters(batch)
        self.sink.write(batch)  # the accepted documents again (no-ops) and the offsets, one transaction

    def _backoff(self, error: BaseException) -> None:
        if self.store_up:
            log.warning("store unavailable; pausing consumption and retrying", error=_first_line(error))
        self.store_up = False
        self._failures += 1
        self._next_try = time.monotonic() + self.backoff.delay(self._failures)

    def join(self, timeout: float | None = None) -> None:
        """Finish the in-flight batch if the store lets us within ``timeout``; else abandon it."""
        deadline = time.monotonic() + (timeout if timeout is not None else 10.0)
        while self._pending is not None and time.monotonic() < deadline:
            if time.monotonic() >= self._next_try:
                self._attempt()
            else:
                time.sleep(min(0.05, max(0.0, self._next_try - time.monotonic())))
        if self._pending is not None:
            log.warning(
                "abandoning the in-flight batch; it will be consumed again", size=len(self._pending.payload)
            )
            self._pending, self._prepared, self._letters_sent = None, None, 0

    def close(self) -> None:
        self._closed = True

    def terminate(self) -> None:
        self._closed = True
        self._pending, self._prepared, self._letters_sent = None, None, 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
