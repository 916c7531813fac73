"""The arroyo strategy that makes a batch durable, then commits its Kafka offsets.

Order, for every batch (STYLE.md: side effects first, offset commit last):

1. dead letters produced to the DLQ topic and flushed;
2. documents + packed codes + consumed offsets written to the store in ONE transaction
   (idempotent by document id: a batch seen again after a crash changes nothing);
3. codebook statistics observed (and a new version published when due);
4. Kafka offsets committed.

A crash between 2 and 4 means the batch is consumed again and written again as a no-op.

What the store says decides what happens next (:mod:`learner.worker.durable`): while it is
away (unreachable, read-only, busy, timed out — or the dead-letter topic does not confirm
delivery) the prepared batch is kept (not re-encoded) and retried with jittered exponential
backoff (:class:`learner.worker.durable.StoreOutage`); meanwhile ``submit`` raises ``MessageRejected``, which
makes arroyo pause the partitions: backpressure instead of a crash loop, and nothing is lost.
Documents it refuses are dead-lettered one by one and the rest is stored with the offsets.

This is the serial worker (``pipeline_depth = 1``): one batch at a time, prepared and written on
the consumer's thread. :mod:`learner.worker.pipeline` overlaps the stages of several batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from arroyo.processing.strategies import MessageRejected, ProcessingStrategy
from arroyo.types import BaseValue, Message

from infra.logging import get_logger
from learner.worker.batch import RawMessage
from learner.worker.durable import TRANSIENT, BatchSink, DurableWrite, StoreOutage

log = get_logger(__name__)

Commit = Callable[..., None]


def raw_message(value: BaseValue[Any]) -> RawMessage:
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
        self.outage = StoreOutage(retry_max_s)
        self._pending: Message[list[BaseValue[Any]]] | None = None
        self._write: DurableWrite | None = None  # the prepared batch, kept across retries
        self._next_try = 0.0
        self._closed = False

    @property
    def store_up(self) -> bool:
        return self.outage.up

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
            if self._write is None:
                prepared = self.sink.prepare([raw_message(v) for v in message.payload], committable)
                self._write = DurableWrite(self.sink, prepared)
            self._write.attempt()
        except TRANSIENT as e:
            self._next_try = time.monotonic() + self.outage.failed(e)
            return
        self.outage.succeeded(self._write.batch.batch_id)
        self._write.after_store()
        self.commit(dict(message.committable), force=True)
        self._pending, self._write = None, None

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
            self._pending, self._write = None, None

    def close(self) -> None:
        self._closed = True

    def terminate(self) -> None:
        self._closed = True
        self._pending, self._write = None, None
