"""The terminal strategy: durable first, commit last; backpressure while the store is away."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from arroyo.backends.kafka import KafkaPayload
from arroyo.processing.strategies import MessageRejected
from arroyo.types import BrokerValue, Message, Partition, Topic, Value

from learner.worker.batch import STORE_REJECTED, DeadLetter, DeadLetterUndelivered, PreparedBatch, RawMessage
from learner.worker.step import StoreStep
from memory_store.errors import DatabaseUnreachable, InvalidRecord

TOPIC = Topic("docs.clean")


class Sink:
    """An in-memory worker: a 'store' that can be switched off, and a log of every effect."""

    def __init__(self) -> None:
        self.up = True
        self.effects: list[tuple[str, Any]] = []
        self.prepared = 0
        self.stored_ids: set[str] = set()

    def prepare(
        self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]
    ) -> PreparedBatch:
        self.prepared += 1
        dead = [DeadLetter(m, "bad", "x") for m in messages if m.value == b"poison"]
        ok = [m for m in messages if m.value != b"poison"]
        return PreparedBatch("b", [m.value for m in ok], dead, [], None, None, None)  # type: ignore[misc]

    def dead_letter(self, letters: list[DeadLetter]) -> None:
        self.effects.append(("dlq", [d.message.offset for d in letters]))

    def write(self, batch: PreparedBatch) -> None:
        if not self.up:
            raise DatabaseUnreachable("store is down")
        self.stored_ids.update(batch.records)  # type: ignore[arg-type]
        self.effects.append(("store", sorted(batch.records)))  # type: ignore[type-var]

    def after_store(self, batch: PreparedBatch) -> None:
        self.effects.append(("observe", len(batch.records)))


def batch(offsets: list[int], values: list[bytes]) -> Message[list[BrokerValue[KafkaPayload]]]:
    part = Partition(TOPIC, 0)
    items = [
        BrokerValue(KafkaPayload(None, v, []), part, o, datetime.now(UTC))
        for o, v in zip(offsets, values, strict=True)
    ]
    return Message(Value(items, {part: offsets[-1] + 1}))


def test_effects_in_order_and_commit_last() -> None:
    sink, commits = Sink(), []
    step = StoreStep(
        sink,
        lambda offsets, force=False: (
            commits.append(dict(offsets)),
            sink.effects.append(("commit", dict(offsets))),
        ),
    )
    step.submit(batch([0, 1, 2], [b"a", b"poison", b"c"]))
    kinds = [k for k, _ in sink.effects]
    assert kinds == ["dlq", "store", "observe", "commit"]
    assert sink.effects[0][1] == [1] and sink.effects[1][1] == [b"a", b"c"]
    assert commits == [{Partition(TOPIC, 0): 3}]


def test_store_outage_pauses_then_resumes_without_reencoding() -> None:
    sink, commits = Sink(), []
    step = StoreStep(sink, lambda offsets, force=False: commits.append(dict(offsets)), retry_max_s=0.05)
    sink.up = False
    step.submit(batch([0, 1], [b"a", b"poison"]))
    assert commits == [] and not step.store_up
    with pytest.raises(MessageRejected):  # arroyo pauses the partitions on this
        step.submit(batch([2], [b"c"]))
    for _ in range(3):
        time.sleep(0.06)
        step.poll()
    assert commits == [] and sink.prepared == 1
    sink.up = True
    time.sleep(0.06)
    step.poll()
    assert commits == [{Partition(TOPIC, 0): 2}]
    assert sink.prepared == 1  # the batch was encoded once across all retries
    assert [k for k, _ in sink.effects].count("dlq") == 1  # dead letters sent once
    step.submit(batch([2], [b"c"]))
    assert commits[-1] == {Partition(TOPIC, 0): 3}
    assert sink.stored_ids == {b"a", b"c"}


def test_join_abandons_what_cannot_be_made_durable() -> None:
    sink, commits = Sink(), []
    step = StoreStep(sink, lambda offsets, force=False: commits.append(dict(offsets)), retry_max_s=0.01)
    sink.up = False
    step.submit(batch([0], [b"a"]))
    step.join(0.1)
    assert commits == []  # nothing committed: the batch is consumed again after a restart
    step.submit(batch([0], [b"a"]))  # accepted again: the abandoned batch no longer blocks


class RefusingSink(Sink):
    """A store that refuses some documents (InvalidRecord), like a constraint would."""

    def __init__(self, refuse: set[bytes], name_culprit: bool) -> None:
        super().__init__()
        self.refuse, self.name_culprit = refuse, name_culprit
        self.letters: list[DeadLetter] = []
        self.offsets_written: list[object] = []

    def prepare(
        self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]
    ) -> PreparedBatch:
        batch = super().prepare(messages, committable)
        batch.messages = [m for m in messages if m.value != b"poison"]
        batch.offsets = [("offsets", dict(committable))]  # type: ignore[list-item]
        return batch

    def dead_letter(self, letters: list[DeadLetter]) -> None:
        self.letters += letters
        super().dead_letter(letters)

    def write(self, batch: PreparedBatch) -> None:
        bad = [r for r in batch.records if r in self.refuse]
        if bad:
            culprit = bad[0].decode() if self.name_culprit else None  # type: ignore[attr-defined]
            raise InvalidRecord(f"document {culprit}: refused", culprit)
        if not self.up:
            raise DatabaseUnreachable("store is down")
        self.stored_ids.update(batch.records)  # type: ignore[arg-type]
        self.offsets_written += batch.offsets


@pytest.mark.parametrize("name_culprit", [True, False])
def test_refused_documents_are_dead_lettered_one_by_one_and_the_rest_stored(name_culprit: bool) -> None:
    values = [b"a", b"b", b"x1", b"c", b"poison", b"x2", b"d", b"e"]
    sink, commits = RefusingSink({b"x1", b"x2"}, name_culprit), []
    step = StoreStep(sink, lambda offsets, force=False: commits.append(dict(offsets)))
    step.submit(batch(list(range(len(values))), values))
    assert sink.stored_ids == {b"a", b"b", b"c", b"d", b"e"}
    assert sorted((d.reason, d.message.value) for d in sink.letters) == [
        ("bad", b"poison"),
        (STORE_REJECTED, b"x1"),
        (STORE_REJECTED, b"x2"),
    ]
    refused = [d for d in sink.letters if d.reason == STORE_REJECTED]
    assert all(
        "refused" in d.detail and d.record().header("mbc-reason") == b"store_rejected" for d in refused
    )
    assert sink.offsets_written == [("offsets", {("docs.clean", 0): 8})]  # once, with the whole batch
    assert commits == [{Partition(TOPIC, 0): 8}]
    step.submit(batch([8], [b"f"]))  # and the stream goes on
    assert commits[-1] == {Partition(TOPIC, 0): 9}


def test_an_undelivered_dead_letter_is_retried_not_skipped() -> None:
    sink, commits = Sink(), []
    broker_up = [False]

    def dead_letter(letters: list[DeadLetter]) -> None:
        if not broker_up[0]:
            raise DeadLetterUndelivered("broker away")
        sink.effects.append(("dlq", [d.message.offset for d in letters]))

    sink.dead_letter = dead_letter  # type: ignore[method-assign]
    step = StoreStep(sink, lambda offsets, force=False: commits.append(dict(offsets)), retry_max_s=0.02)
    step.submit(batch([0, 1], [b"a", b"poison"]))
    assert commits == [] and not step.store_up and sink.stored_ids == set()
    broker_up[0] = True
    time.sleep(0.03)
    step.poll()
    assert [k for k, _ in sink.effects] == ["dlq", "store", "observe"] and commits == [
        {Partition(TOPIC, 0): 2}
    ]


def test_the_outage_logs_once_each_way_and_backs_off_to_its_cap() -> None:
    from structlog.testing import capture_logs

    from learner.worker.durable import StoreOutage

    outage = StoreOutage(retry_max_s=2.0)
    with capture_logs() as logs:
        waits = [outage.failed(DatabaseUnreachable(f"down {n}\nmore")) for n in range(6)]
        assert not outage.up and outage.failures == 6
        outage.succeeded("b7")
        outage.succeeded("b8")  # already up: nothing more to say
    assert outage.up
    assert [(e["event"], e.get("error"), e.get("batch_id")) for e in logs] == [
        ("store unavailable; pausing consumption and retrying", "down 0", None),
        ("store reachable again; resuming", None, "b7"),
    ]
    caps = [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]  # first_s 0.5, doubling, capped at retry_max_s
    assert all(0.8 * c <= w <= c for c, w in zip(caps, waits, strict=True))
