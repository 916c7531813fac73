"""The pipelined terminal step: batches overlap (tokenize n+1, encode n, write n-1), yet every
batch's Kafka offsets are committed only after its store transaction, and in order; the store's
outages pause it without losing or re-encoding anything; stopping abandons uncommitted batches.

The cheap behaviours of the serial step are run over both (depth 1 = StoreStep, depth 3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from arroyo.backends.kafka import KafkaPayload
from arroyo.processing.strategies import MessageRejected, ProcessingStrategy
from arroyo.types import BrokerValue, Message, Partition, Topic, Value

from learner.worker.batch import STORE_REJECTED, DeadLetter, PreparedBatch, RawMessage, Tokenized
from learner.worker.pipeline import PipelinedStore
from learner.worker.step import StoreStep
from memory_store.errors import DatabaseUnreachable, InvalidRecord

TOPIC = Topic("docs.clean")
PART = Partition(TOPIC, 0)


class StagedSink:
    """An in-memory worker whose stages take time and log when they start and end (thread-safe)."""

    def __init__(self, stage_s: float = 0.0, refuse: frozenset[bytes] = frozenset()) -> None:
        self.stage_s, self.refuse = stage_s, refuse
        self.up = True
        self.events: list[tuple[str, int]] = []  # (what, first offset of the batch)
        self.lock = threading.Lock()
        self.prepared = 0
        self.stored: list[bytes] = []
        self.letters: list[DeadLetter] = []
        self.fail_encode_at: int | None = None

    def log(self, what: str, batch: int) -> None:
        with self.lock:
            self.events.append((what, batch))

    def tokenize(self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]) -> Tokenized:
        first = messages[0].offset
        self.log("tokenize", first)
        time.sleep(self.stage_s)
        good = [(m, m.value) for m in messages if m.value != b"poison"]
        dead = [DeadLetter(m, "bad", "x") for m in messages if m.value == b"poison"]
        self.log("tokenized", first)
        return Tokenized(str(first), good, dead, [("offsets", dict(committable))], None)  # type: ignore[list-item,arg-type]

    def encode(self, batch: Tokenized) -> PreparedBatch:
        first = int(batch.batch_id)
        self.log("encode", first)
        if self.fail_encode_at == first:
            raise RuntimeError("the device is broken")
        time.sleep(self.stage_s)
        with self.lock:
            self.prepared += 1
        self.log("encoded", first)
        records = [v for _, v in batch.good]
        messages = [m for m, _ in batch.good]
        return PreparedBatch(
            batch.batch_id, records, batch.dead_letters, batch.offsets, None, None, None, messages=messages
        )  # type: ignore[arg-type]

    def prepare(
        self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]
    ) -> PreparedBatch:
        return self.encode(self.tokenize(messages, committable))

    def dead_letter(self, letters: list[DeadLetter]) -> None:
        self.letters += letters
        self.log("dlq", letters[0].message.offset)

    def write(self, batch: PreparedBatch) -> None:
        bad = [r for r in batch.records if r in self.refuse]
        if bad:
            raise InvalidRecord("refused", bad[0].decode())  # type: ignore[attr-defined]
        if not self.up:
            raise DatabaseUnreachable("store is down")
        self.log("write", int(batch.batch_id))
        time.sleep(self.stage_s)
        self.stored += batch.records  # type: ignore[arg-type]
        self.log("written", int(batch.batch_id))

    def after_store(self, batch: PreparedBatch) -> None:
        self.log("observed", int(batch.batch_id))


def batch(first: int, values: list[bytes]) -> Message[list[BrokerValue[KafkaPayload]]]:
    items = [
        BrokerValue(KafkaPayload(None, v, []), PART, first + i, datetime.now(UTC))
        for i, v in enumerate(values)
    ]
    return Message(Value(items, {PART: first + len(values)}))


def make_step(
    depth: int, sink: StagedSink, commits: list[int], retry_max_s: float = 30.0
) -> ProcessingStrategy[Any]:
    def commit(offsets: Mapping[Partition, int], force: bool = False) -> None:
        commits.append(offsets[PART])
        sink.log("commit", offsets[PART])

    if depth == 1:
        return StoreStep(sink, commit, retry_max_s)  # type: ignore[arg-type]
    return PipelinedStore(sink, commit, depth, retry_max_s)  # type: ignore[arg-type]


class Driver:
    """Submits like arroyo's consumer loop does: poll, submit, hold a rejected message and retry."""

    def __init__(self, step: ProcessingStrategy[Any]) -> None:
        self.step, self.pending, self.rejected = step, list[Message[Any]](), 0

    def run(self, messages: list[Message[Any]], until: Callable[[], bool], timeout: float = 10) -> None:
        self.pending += messages
        deadline = time.monotonic() + timeout
        while (self.pending or not until()) and time.monotonic() < deadline:
            self.step.poll()
            if self.pending:
                try:
                    self.step.submit(self.pending[0])
                    self.pending.pop(0)
                except MessageRejected:
                    self.rejected += 1
                    time.sleep(0.005)
            else:
                time.sleep(0.005)


def drive(
    step: ProcessingStrategy[Any],
    messages: list[Message[Any]],
    until: Callable[[], bool],
    timeout: float = 10,
) -> int:
    driver = Driver(step)
    driver.run(messages, until, timeout)
    return driver.rejected


def test_overlapping_batches_commit_after_their_store_transaction_in_order() -> None:
    sink, commits = StagedSink(stage_s=0.05), []
    step = make_step(3, sink, commits)
    messages = [batch(10 * i, [b"a%d" % i, b"b%d" % i]) for i in range(8)]
    rejected = drive(step, messages, lambda: len(commits) == 8)
    step.close()
    step.join(5)
    ends = [10 * i + 2 for i in range(8)]
    assert commits == ends  # every batch committed once, in consumption order
    at = {e: i for i, e in enumerate(sink.events)}
    for i in range(8):  # commit strictly after the batch's store transaction and its maintenance
        assert at[("written", 10 * i)] < at[("observed", 10 * i)] < at[("commit", 10 * i + 2)]
    for what in ("tokenize", "encode", "write"):  # each stage takes batches in order
        assert [b for w, b in sink.events if w == what] == [10 * i for i in range(8)]
    # the stages overlapped: a batch was tokenized while an earlier one was encoded or written
    assert any(at[("tokenize", 10 * (i + 1))] < at[("encoded", 10 * i)] for i in range(7))
    assert any(at[("tokenize", 10 * (i + 2))] < at[("written", 10 * i)] for i in range(6))
    assert rejected > 0  # backpressure: never more than depth batches in flight
    assert sink.stored == [v for i in range(8) for v in (b"a%d" % i, b"b%d" % i)]


@pytest.mark.parametrize("depth", [1, 3])
def test_effects_in_order_and_commit_last(depth: int) -> None:
    sink, commits = StagedSink(), []
    step = make_step(depth, sink, commits)
    drive(step, [batch(0, [b"a", b"poison", b"c"])], lambda: bool(commits))
    kinds = [k for k, _ in sink.events if k in ("dlq", "write", "observed", "commit")]
    assert kinds == ["dlq", "write", "observed", "commit"] and commits == [3]


@pytest.mark.parametrize("depth", [1, 3])
def test_store_outage_pauses_then_resumes_without_reencoding(depth: int) -> None:
    sink, commits = StagedSink(), []
    step = make_step(depth, sink, commits, retry_max_s=0.05)
    sink.up = False
    messages = [batch(i * 2, [b"x%d" % i, b"poison"]) for i in range(5)]
    driver = Driver(step)
    driver.run(messages, lambda: False, timeout=0.6)
    assert commits == [] and driver.rejected > 0  # paused: partitions stop while the store is away
    sink.up = True
    driver.run([], lambda: commits[-1:] == [10])
    assert commits == [2, 4, 6, 8, 10]
    assert sink.prepared == 5  # each batch encoded once across all retries
    assert sorted(d.message.offset for d in sink.letters) == [1, 3, 5, 7, 9]  # dead letters sent once


@pytest.mark.parametrize("depth", [1, 3])
def test_join_abandons_what_cannot_be_made_durable(depth: int) -> None:
    sink, commits = StagedSink(), []
    step = make_step(depth, sink, commits, retry_max_s=0.01)
    sink.up = False
    drive(step, [batch(0, [b"a"]), batch(1, [b"b"])][: 2 if depth > 1 else 1], lambda: False, timeout=0.3)
    step.close()
    t0 = time.monotonic()
    step.join(0.1)
    assert time.monotonic() - t0 < 5 and commits == []  # consumed again after a restart
    sink.up = True
    time.sleep(0.1)
    assert sink.stored == [] and commits == []  # given up at join: nothing written after it


@pytest.mark.parametrize("depth", [1, 3])
def test_join_flushes_in_flight_batches_when_the_store_is_up(depth: int) -> None:
    sink, commits = StagedSink(stage_s=0.02), []
    step = make_step(depth, sink, commits)
    drive(step, [batch(0, [b"a"]), batch(1, [b"b"]), batch(2, [b"c"])], lambda: True)  # all submitted
    assert depth == 1 or commits != [1, 2, 3]  # still in flight when join comes
    step.close()
    step.join(10)
    assert commits == [1, 2, 3] and sink.stored == [b"a", b"b", b"c"]


@pytest.mark.parametrize("depth", [1, 3])
def test_refused_documents_are_dead_lettered_and_the_rest_stored(depth: int) -> None:
    values = [b"a", b"b", b"x1", b"c", b"poison", b"x2", b"d", b"e"]
    sink, commits = StagedSink(refuse=frozenset({b"x1", b"x2"})), []
    step = make_step(depth, sink, commits)
    drive(step, [batch(0, values), batch(8, [b"f"])], lambda: commits[-1:] == [9])
    assert set(sink.stored) == {b"a", b"b", b"c", b"d", b"e", b"f"}  # parts written while probing, too
    assert sorted((d.reason, d.message.value) for d in sink.letters) == [
        ("bad", b"poison"),
        (STORE_REJECTED, b"x1"),
        (STORE_REJECTED, b"x2"),
    ]
    assert commits == [8, 9]


def test_a_failed_batch_stops_the_worker_and_no_later_batch_is_written() -> None:
    sink, commits = StagedSink(stage_s=0.02), []
    sink.fail_encode_at = 10
    step = make_step(3, sink, commits)
    with pytest.raises(RuntimeError, match="device is broken"):
        drive(step, [batch(0, [b"a"]), batch(10, [b"b"]), batch(20, [b"c"])], lambda: False, timeout=3)
    step.terminate()
    assert commits == [1]  # the batch before the failure only
    assert [b for w, b in sink.events if w == "write"] == [0]


def test_shutdown_behind_arroyo_reduce_flushes_a_full_pipeline_quickly() -> None:
    """Reduce.join retries its last flush without polling: the pipeline must still drain."""
    from arroyo.processing.strategies import Reduce

    sink, commits = StagedSink(stage_s=0.05), []
    step = make_step(3, sink, commits)
    chain: Reduce[KafkaPayload, list[Any]] = Reduce(
        2,
        60.0,
        lambda acc, v: [*acc, v],
        list,
        step,  # type: ignore[arg-type]
    )
    values = [BrokerValue(KafkaPayload(None, b"d%d" % i, []), PART, i, datetime.now(UTC)) for i in range(9)]
    drive(chain, [Message(v) for v in values], lambda: True)  # 4 batches of 2 in flight or held, 1 buffered
    chain.close()
    t0 = time.monotonic()
    chain.join(25)
    assert time.monotonic() - t0 < 5
    assert commits == [2, 4, 6, 8, 9] and len(sink.stored) == 9
