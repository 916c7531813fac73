"""The pipelined worker (``pipeline_depth`` > 1): three stages of three batches at once.

    Reduce ─> PipelinedStore = RunTaskInThreads(one task per batch, depth threads, in order)
                               ─> CommitStored (Kafka commit of stored batches, in order)

Each batch is one task that passes three one-lane gates (:class:`learner.worker.in_order.InOrder`):

    tokenize (decode, validate, fast-tokenizer batch encoding; CPU, GIL released)
    ─> encode (host->device copy from pinned memory, amortize, quantize; GPU)
    ─> write (dead letters, then documents + codes + offsets in ONE store transaction, then
       codebook maintenance)

so while batch n is on the GPU, batch n + 1 is tokenized and batch n − 1 written. Every gate
admits batches in consumption order, one at a time; arroyo's ``RunTaskInThreads`` hands the
outcomes to :class:`learner.worker.commit_stored.CommitStored` in that same order, and only
after a task has returned — after its store transaction. The guarantee is the serial worker's:
a batch's Kafka offsets are committed after its transaction, and in order; the store's offsets
(written with the documents) never run ahead of a batch that was not written, because a batch
that fails or is abandoned in the write gate breaks it for every later batch.

Backpressure: ``RunTaskInThreads`` raises ``MessageRejected`` when ``depth`` batches are in
flight — when the GPU or the store is the slower side, or while the store is away (the write
stage retries with jittered backoff, the batch kept encoded) — and arroyo pauses the partitions.

Stopping: ``join(timeout)`` lets in-flight batches finish until shortly before ``timeout``;
what is not written by then is abandoned uncommitted (consumed again later, never lost).
``terminate`` abandons at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from arroyo.processing.strategies import MessageRejected, ProcessingStrategy, RunTaskInThreads
from arroyo.types import BaseValue, Message

from learner.worker.batch import PreparedBatch, RawMessage, Tokenized
from learner.worker.commit_stored import Abandoned, CommitStored, Outcome, Stored
from learner.worker.durable import TRANSIENT, BatchSink, DurableWrite, StoreOutage
from learner.worker.in_order import GateBroken, InOrder, wait_until
from learner.worker.step import Commit, raw_message

JOIN_MARGIN_S = 2.0  # stop starting writes this long before join's timeout (a write takes time)

Batch = list[BaseValue[Any]]
Ticketed = tuple[int, Batch]  # (the batch's place in consumption order, its messages)


class StagedSink(BatchSink, Protocol):
    """A sink whose ``prepare`` comes in two halves, for two pipeline stages."""

    def tokenize(
        self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]
    ) -> Tokenized: ...

    def encode(self, batch: Tokenized) -> PreparedBatch: ...


class _Abandon(Exception):
    """The worker is stopping: drop this batch before its store transaction."""


class PipelinedStore(ProcessingStrategy[Batch]):
    """Terminal step with ``depth`` batches in flight (see the module docstring)."""

    def __init__(self, sink: StagedSink, commit: Commit, depth: int = 3, retry_max_s: float = 30.0) -> None:
        if depth < 2:
            raise ValueError("a pipeline needs depth >= 2; depth 1 is StoreStep")
        self.sink = sink
        self.outage = StoreOutage(retry_max_s)  # touched by the write stage only: one batch at a time
        self.gates = (InOrder("tokenize"), InOrder("encode"), InOrder("write"))
        self.committer = CommitStored(commit)
        self._threads: RunTaskInThreads[Ticketed, Outcome] = RunTaskInThreads(
            self._run, concurrency=depth, max_pending_futures=depth - 1, next_step=self.committer
        )
        self._next_ticket = 0
        self._deadline: float | None = None  # stop by then (join / terminate)
        self._closed = False

    @property
    def store_up(self) -> bool:
        return self.outage.up

    # -- arroyo ----------------------------------------------------------------------------------

    def submit(self, message: Message[Batch]) -> None:
        assert not self._closed
        ticket = self._next_ticket
        # Hand finished batches on first: arroyo's Reduce.join retries its last flush without
        # polling, and would otherwise spin until its timeout while the pipeline is full.
        self._threads.poll()
        try:
            self._threads.submit(message.replace((ticket, message.payload)))
        except MessageRejected:
            time.sleep(0.002)  # the caller retries at once in Reduce.join: leave the CPU to the stages
            raise
        self._next_ticket = ticket + 1  # only once the task exists: tickets have no gaps

    def poll(self) -> None:
        self._threads.poll()  # outcomes to CommitStored in order; a task's error escapes here

    def close(self) -> None:
        self._closed = True
        self._threads.close()

    def join(self, timeout: float | None = None) -> None:
        """Finish in-flight batches until shortly before ``timeout``; abandon the rest."""
        limit = timeout if timeout is not None else 10.0
        self._deadline = time.monotonic() + max(0.0, limit - JOIN_MARGIN_S)
        self._threads.join(limit)

    def terminate(self) -> None:
        self._closed = True
        self._deadline = time.monotonic()
        for gate in self.gates:
            gate.break_("terminated")
        self._threads.terminate()

    # -- one batch, in a pool thread ---------------------------------------------------------------

    def _stopping(self) -> str | None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return "the worker is stopping"
        return None

    def _run(self, message: Message[Ticketed]) -> Outcome:
        ticket, values = message.payload
        committable = {(p.topic.name, p.index): o for p, o in message.committable.items()}
        tokenize, encode, write = self.gates
        try:
            with tokenize.turn(ticket, self._stopping):
                tokens = self.sink.tokenize([raw_message(v) for v in values], committable)
            with encode.turn(ticket, self._stopping):
                prepared = self.sink.encode(tokens)
            with write.turn(ticket, self._stopping):
                self._make_durable(prepared)
        except (GateBroken, _Abandon) as e:
            return Abandoned(len(values), str(e))
        return Stored(prepared.batch_id)

    def _make_durable(self, batch: PreparedBatch) -> None:
        """Dead letters, then the store transaction, retried while the store is away."""
        durable = DurableWrite(self.sink, batch)
        while True:
            why = self._stopping()
            if why is not None:
                raise _Abandon(why)
            try:
                durable.attempt()
                break
            except TRANSIENT as e:
                why = wait_until(time.monotonic() + self.outage.failed(e), self._stopping)
                if why is not None:
                    raise _Abandon(why) from e
        self.outage.succeeded(batch.batch_id)
        durable.after_store()
