"""The arroyo strategy that makes a batch durable, then commits its Kafka offsets.

Order, for every batch (STYLE.md: side effects first, offset commit last):

1. dead letters produced to the DLQ topic and flushed;
2. documents + packed codes + consumed offsets written to the store in ONE transaction
   (idempotent by document id: a batch seen again after a crash changes nothing);
3. codebook statistics observed (and a new version published when due);
4. Kafka offsets committed.

A crash between 2 and 4 means the batch is consumed again and written again as a no-op.
When the store is unreachable the prepared batch is kept (not re-encoded) and retried with
backoff; meanwhile ``submit`` raises ``MessageRejected``, which makes arroyo pause the
partitions: backpressure instead of a crash loop, and nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import sqlalchemy as sa
from arroyo.processing.strategies import MessageRejected, ProcessingStrategy
from arroyo.types import BaseValue, Message

from infra.logging import get_logger
from learner.worker.batch import DeadLetter, PreparedBatch, RawMessage
from memory_store.errors import DatabaseUnreachable, StoreBusy

log = get_logger(__name__)

# Errors that mean "the store is away for now", not "this batch is bad".
TRANSIENT = (
    DatabaseUnreachable,
    StoreBusy,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DBAPIError,
)


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
        self._pending: Message[list[BaseValue[Any]]] | None = None
        self._prepared: PreparedBatch | None = None
        self._letters_sent = False
        self._next_try = 0.0
        self._delay = min(0.5, retry_max_s)
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
        if self._prepared is None:
            self._prepared = self.sink.prepare([_raw(v) for v in message.payload], committable)
        batch = self._prepared
        try:
            if batch.dead_letters and not self._letters_sent:
                self.sink.dead_letter(batch.dead_letters)
                self._letters_sent = True
            self.sink.write(batch)
        except TRANSIENT as e:
            self._backoff(e)
            return
        if not self.store_up:
            log.info("store reachable again; resuming", batch_id=batch.batch_id)
        self.store_up, self._delay = True, min(0.5, self.retry_max_s)
        try:
            self.sink.after_store(batch)
        except TRANSIENT as e:  # codebook publication can wait for the next batch
            log.warning("codebook maintenance deferred: store unavailable", error=str(e).splitlines()[0])
        self.commit(dict(message.committable), force=True)
        self._pending, self._prepared, self._letters_sent = None, None, False

    def _backoff(self, error: BaseException) -> None:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if self.store_up:
            log.warning("store unavailable; pausing consumption and retrying", error=first)
        self.store_up = False
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.retry_max_s)

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
            self._pending, self._prepared = None, None

    def close(self) -> None:
        self._closed = True

    def terminate(self) -> None:
        self._closed = True
        self._pending, self._prepared = None, None
