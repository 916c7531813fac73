"""The stage's decisions and books without faust: duplicate window, replays after a restart, gaps,
and — as a property over random crash schedules — exact accounting under at-least-once delivery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.events import Limits, make_document
from pipeline.stage.logic import Ledger, Outcome, StageLogic

NOW_MS = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp() * 1000)
TEXTS = ["Port reopens.", "Copper output rises.", "New routes from Tarn.", "Budget approved.", "Strike ends."]


def message(i: int, text: int | None, source: str = "feed") -> tuple[bytes | None, bytes]:
    """Raw message ``i``: a document with one of TEXTS, or (``text=None``) garbage."""
    if text is None:
        return None, b"\xff not a document"
    doc = make_document(
        source=source, ref=f"item-{i}", text=TEXTS[text], fetched_at=datetime(2026, 11, 25, tzinfo=UTC)
    )
    return doc.key, doc.to_json()


def test_duplicates_within_the_window_are_dropped_after_it_accepted_again() -> None:
    logic = StageLogic({}, Limits(), window_ms=10_000)
    outcomes = []
    for offset, (text, ts) in enumerate(
        [(0, 0), (1, 1_000), (0, 5_000), (0, 10_000), (0, 10_001), (0, 12_000)]
    ):
        key, value = message(offset, text)
        outcomes.append(logic.process(0, offset, NOW_MS + ts, key, value).outcome)
    # The window counts from the last accepted copy: 10,000 ms after it is still a duplicate.
    assert outcomes == [
        Outcome.ACCEPTED,
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
    ]
    assert logic.ledger(0) == Ledger(next_offset=6, accepted=3, duplicate=3)


def test_same_text_from_another_source_or_partition_is_not_a_duplicate() -> None:
    logic = StageLogic({}, Limits(), window_ms=10_000)
    assert logic.process(0, 0, NOW_MS, *message(0, 0, "a")).outcome is Outcome.ACCEPTED
    assert logic.process(0, 1, NOW_MS, *message(1, 0, "b")).outcome is Outcome.ACCEPTED
    assert logic.process(1, 0, NOW_MS, *message(2, 0, "a")).outcome is Outcome.ACCEPTED
    assert logic.process(0, 2, NOW_MS, *message(3, 0, "a")).outcome is Outcome.DUPLICATE


def test_replayed_messages_resend_outputs_but_are_not_counted_again() -> None:
    state: dict[str, Any] = {}
    logic = StageLogic(state, Limits(), window_ms=60_000)
    msgs = [message(0, 0), message(1, None), message(2, 0), message(3, 1)]
    first = [logic.process(0, o, NOW_MS, *m) for o, m in enumerate(msgs)]
    books = logic.ledger(0)
    again = [logic.process(0, o, NOW_MS, *m) for o, m in enumerate(msgs)]  # a restart before the commit
    assert [s.outcome for s in first] == [
        Outcome.ACCEPTED,
        Outcome.REJECTED,
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
    ]
    assert [s.outcome for s in again] == [s.outcome for s in first]
    assert all(s.replay for s in again) and not any(s.replay for s in first)
    assert logic.ledger(0) == books == Ledger(4, accepted=2, duplicate=1, rejected={"not_utf8": 1})


def test_offsets_the_broker_deleted_are_counted_as_skipped() -> None:
    logic = StageLogic({}, Limits(), window_ms=60_000)
    step = logic.process(0, 5, NOW_MS, *message(5, 0))
    assert step.skipped == 5 and step.outcome is Outcome.ACCEPTED
    assert logic.process(0, 6, NOW_MS, *message(6, 1)).skipped == 0
    assert logic.process(0, 9, NOW_MS, *message(9, 2)).skipped == 2
    assert logic.ledger(0) == Ledger(next_offset=10, accepted=3, skipped=7)


def test_sweep_forgets_only_expired_entries_of_its_partition() -> None:
    state: dict[str, Any] = {}
    logic = StageLogic(state, Limits(), window_ms=1_000, sweep_every=3)
    logic.process(1, 0, NOW_MS, *message(0, 3))
    logic.process(0, 0, NOW_MS, *message(1, 0))
    logic.process(0, 1, NOW_MS + 500, *message(2, 1))
    logic.process(0, 2, NOW_MS + 1_200, *message(3, 2))  # third of partition 0: sweeps entries older than 200
    kept = sorted(k.split(":")[1] for k in state if k.startswith("h:"))
    assert kept == ["0", "0", "1"]


# --- exact accounting under crashes ------------------------------------------------------------


@dataclass
class Cluster:
    """A simulated broker for the stage: per partition an ordered changelog and output topics.

    Writes are pending until a commit (faust flushes before committing offsets). A crash keeps a
    prefix of each changelog partition's pending writes (one ordered partition) and any subset
    of pending outputs (other topics, no ordering guarantee).
    """

    partitions: int
    durable_log: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)
    pending_log: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)
    durable_out: list[tuple[str, int, int]] = field(default_factory=list)
    pending_out: list[tuple[str, int, int]] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in range(self.partitions):
            self.durable_log[p], self.pending_log[p], self.committed[p] = [], [], 0

    def commit(self, positions: dict[int, int]) -> None:
        for p in range(self.partitions):
            self.durable_log[p] += self.pending_log[p]
            self.pending_log[p] = []
        self.durable_out += self.pending_out
        self.pending_out = []
        self.committed = dict(positions)

    def crash(self, keep_log: list[float], keep_out: list[bool]) -> None:
        for p in range(self.partitions):
            pending = self.pending_log[p]
            self.durable_log[p] += pending[: int(len(pending) * keep_log[p])]
            self.pending_log[p] = []
        self.durable_out += [o for o, keep in zip(self.pending_out, keep_out, strict=False) if keep]
        self.pending_out = []

    def restore(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for p in range(self.partitions):
            for key, value in self.durable_log[p]:
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
        return state


class ChangelogTable(dict[str, Any]):
    """A dict that, like a faust Table, logs each change to the current event's partition."""

    def __init__(self, initial: dict[str, Any], cluster: Cluster) -> None:
        super().__init__(initial)
        self.cluster = cluster
        self.partition = 0

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.cluster.pending_log[self.partition].append((key, value))

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.cluster.pending_log[self.partition].append((key, None))

    def keys(self) -> Any:
        return list(super().keys())


def reference(
    msgs: dict[int, list[tuple[int, bytes | None, bytes]]], window: int
) -> dict[tuple[int, int], Outcome]:
    logic = StageLogic({}, Limits(), window_ms=window, sweep_every=10**9)
    return {
        (p, o): logic.process(p, o, ts, key, value).outcome
        for p, items in msgs.items()
        for o, (ts, key, value) in enumerate(items)
    }


def run_with_crashes(
    msgs: dict[int, list[tuple[int, bytes | None, bytes]]], data: st.DataObject, window: int, sweep_every: int
) -> tuple[Cluster, dict[int, Ledger]]:
    cluster = Cluster(len(msgs))
    table = ChangelogTable({}, cluster)
    logic = StageLogic(table, Limits(), window_ms=window, sweep_every=sweep_every)
    positions = dict(cluster.committed)
    for _ in range(400):
        todo = [p for p in msgs if positions[p] < len(msgs[p])]
        if not todo:
            break
        action = data.draw(st.sampled_from(["process"] * 8 + ["commit", "crash"]))
        if action == "commit":
            cluster.commit(positions)
        elif action == "crash":
            keep_log = [data.draw(st.floats(0, 1)) for _ in msgs]
            keep_out = data.draw(
                st.lists(st.booleans(), min_size=len(cluster.pending_out), max_size=len(cluster.pending_out))
            )
            cluster.crash(keep_log, keep_out)
            table = ChangelogTable(cluster.restore(), cluster)
            logic = StageLogic(table, Limits(), window_ms=window, sweep_every=sweep_every)
            positions = dict(cluster.committed)
        else:
            p = data.draw(st.sampled_from(todo))
            o = positions[p]
            ts, key, value = msgs[p][o]
            table.partition = p
            step = logic.process(p, o, ts, key, value)
            if step.outcome is not Outcome.DUPLICATE:
                cluster.pending_out.append((step.outcome.value, p, o))
            positions[p] += 1
    # Run to the end without further crashes, then a final commit (a clean shutdown).
    for p, items in msgs.items():
        table.partition = p
        for o in range(positions[p], len(items)):
            step = logic.process(p, o, *items[o])
            if step.outcome is not Outcome.DUPLICATE:
                cluster.pending_out.append((step.outcome.value, p, o))
    cluster.commit({p: len(items) for p, items in msgs.items()})
    return cluster, {p: logic.ledger(p) for p in msgs}


_stream = st.lists(st.tuples(st.integers(0, 3_000), st.none() | st.integers(0, len(TEXTS) - 1)), max_size=40)
raw_streams = st.fixed_dictionaries({0: _stream, 1: _stream})


def build(
    streams: dict[int, list[tuple[int, int | None]]],
) -> dict[int, list[tuple[int, bytes | None, bytes]]]:
    out = {}
    for p, items in streams.items():
        ts, rows = NOW_MS, []
        for i, (gap, text) in enumerate(items):
            ts += gap
            rows.append((ts, *message(p * 1000 + i, text)))
        out[p] = rows
    return out


def provenance(outputs: Iterable[tuple[str, int, int]], kind: str) -> set[tuple[int, int]]:
    return {(p, o) for k, p, o in outputs if k == kind}


@settings(max_examples=120, deadline=None)
@given(streams=raw_streams, data=st.data())
def test_accounting_is_exact_and_outputs_complete_under_random_crashes(
    streams: dict[int, list[tuple[int, int | None]]], data: st.DataObject
) -> None:
    msgs = build(streams)
    window = 10**9  # nothing expires: every decision can be reproduced exactly
    expected = reference(msgs, window)
    cluster, ledgers = run_with_crashes(msgs, data, window, sweep_every=10**9)
    for p, items in msgs.items():
        mine = {o: out for (q, o), out in expected.items() if q == p}
        assert ledgers[p].next_offset == len(items) and ledgers[p].skipped == 0
        assert ledgers[p].accepted == sum(v is Outcome.ACCEPTED for v in mine.values())
        assert ledgers[p].duplicate == sum(v is Outcome.DUPLICATE for v in mine.values())
        assert sum(ledgers[p].rejected.values()) == sum(v is Outcome.REJECTED for v in mine.values())
    # Every accepted message reached the clean topic, every rejected one the DLQ; nothing else did.
    assert provenance(cluster.durable_out, "accepted") == {
        k for k, v in expected.items() if v is Outcome.ACCEPTED
    }
    assert provenance(cluster.durable_out, "rejected") == {
        k for k, v in expected.items() if v is Outcome.REJECTED
    }


@settings(max_examples=60, deadline=None)
@given(streams=raw_streams, data=st.data())
def test_with_a_short_window_and_sweeping_the_counts_stay_exact(
    streams: dict[int, list[tuple[int, int | None]]], data: st.DataObject
) -> None:
    msgs = build(streams)
    window = 1_500
    expected = reference(msgs, window)
    cluster, ledgers = run_with_crashes(msgs, data, window, sweep_every=2)
    total = sum(ledger.total for ledger in ledgers.values())
    assert total == len(expected)
    assert sum(ledger.accepted for ledger in ledgers.values()) == sum(
        v is Outcome.ACCEPTED for v in expected.values()
    )
    # Nothing accepted is ever lost (a swept entry can make a replay re-send a duplicate, not drop a document).
    assert provenance(cluster.durable_out, "accepted") >= {
        k for k, v in expected.items() if v is Outcome.ACCEPTED
    }
