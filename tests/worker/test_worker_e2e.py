"""`mbc learn` end to end on the embedded broker with the tiny preset on CPU: every document
produced ends up in the store exactly once, with codes, offsets and counts consistent; poison
messages are dead-lettered; SIGTERM stops the worker cleanly; two workers share one stream."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer

from memory_store.codec import unpack_codes
from memory_store.models import documents as documents_table
from memory_store.store import MemoryStore
from memory_store.text_sketch import TextSketch
from tests.worker.conftest import WorkerProcess, documents, log_events, produce, tiny_k, wait_for, worker_env


def stored_ids(store: MemoryStore) -> Counter[str]:
    with store.engine.connect() as conn:
        return Counter(r[0] for r in conn.exec_driver_sql("SELECT id FROM documents"))


def recount(store: MemoryStore) -> dict[tuple[int, int], int]:
    codes, versions = store.slice_codes()
    return dict(Counter((int(v), int(c)) for row, v in zip(codes, versions, strict=True) for c in row))


def read_topic(
    bootstrap: str, topic: str, want: int, timeout: float = 30
) -> list[tuple[bytes | None, dict[str, bytes]]]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    c.subscribe([topic])
    out: list[tuple[bytes | None, dict[str, bytes]]] = []
    import time

    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        out.append((m.value(), {k: v for k, v in (m.headers() or [])}))
    c.close()
    return out


def assert_consistent(
    store: MemoryStore, expected_ids: set[str], group: str, topic: str, produced: int
) -> None:
    ids = stored_ids(store)
    assert set(ids) == expected_ids, (len(set(ids) - expected_ids), len(expected_ids - set(ids)))
    assert max(ids.values()) == 1
    counts = {(c.codebook_version, c.code): c.n for c in store.counts()}
    assert counts == recount(store)
    assert sum(counts.values()) == len(expected_ids) * tiny_k()
    offsets = store.stored_offsets(group, topic)
    assert sum(offsets.values()) == produced  # every consumed message accounted for, once


@pytest.mark.slow
def test_every_document_stored_exactly_once(
    broker: str, tiny_checkpoint: Path, tmp_path: Path, worker_log: Path, db_url: str
) -> None:
    prefix, group = f"e2e-{uuid.uuid4().hex[:6]}", "learner-e2e"
    msgs = documents(300)
    poison = [(b"p1", b"\xff\xfe not json"), (b"p2", b'{"schema_version": 1, "id": "x"}'), (b"p3", b"")]
    produce(broker, f"{prefix}.clean", msgs[:150] + poison + msgs[150:])
    env = worker_env(broker, db_url, group, prefix)
    worker = WorkerProcess(tiny_checkpoint, env, worker_log, "--batch-max-size", "64")
    store = MemoryStore(db_url, auto_migrate=True)
    try:
        wait_for(
            lambda: sum(store.stored_offsets(group, f"{prefix}.clean").values()) == 303, 180, "the stream"
        )
        assert worker.stop() == 0, worker_log.read_text()[-3000:]
    finally:
        if worker.alive():
            worker.kill()
    expected = {__import__("json").loads(v)["id"] for _, v in msgs}
    assert_consistent(store, expected, group, f"{prefix}.clean", 303)
    doc = store.document(sorted(expected)[0])
    assert doc is not None and doc.position is not None and doc.position.topic == f"{prefix}.clean"
    version = store.get_codebook(doc.codebook_version)
    assert list(unpack_codes(doc.codes, tiny_k(), version.info.num_codes)) == list(doc.indices)
    # the worker wrote each document's text sketch with its codes: found again by its own words
    text = next(__import__("json").loads(v)["text"] for _, v in msgs if doc.id.encode() in v)
    with store.engine.connect() as conn:
        q = sa.select(documents_table.c.text_sketch).where(documents_table.c.id == doc.id)
        stored = conn.execute(q).scalar()
    assert bytes(stored) == TextSketch().documents([text])[0].tobytes()
    assert doc.id in [d.id for d in store.retrieve_by_text(text, 3)]
    dlq = read_topic(broker, f"{prefix}.dlq", 3)
    assert sorted(v or b"" for v, _ in dlq) == sorted(v for _, v in poison)
    assert {h["mbc-reason"].decode() for _, h in dlq} <= {
        "invalid_json",
        "not_utf8",
        "missing_field",
        "wrong_type",
    }
    assert all(h["mbc-stage"] == b"learner" for _, h in dlq)
    events = [e for e in log_events(worker_log) if e.get("event") == "batch stored"]
    assert events and all(e.get("service") == "learner" and e.get("batch_id") for e in events)
    store.close()


@pytest.mark.slow
def test_two_workers_share_one_stream_and_one_codebook_history(
    broker: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    prefix, group = f"two-{uuid.uuid4().hex[:6]}", "learner-two"
    db_url = f"sqlite:///{tmp_path / 'two.db'}"
    msgs = documents(800)
    produce(broker, f"{prefix}.clean", msgs)
    env = {
        **worker_env(broker, db_url, group, prefix),
        "MBC_CODEBOOK": "ema",
        "MBC_PUBLISH_EVERY_DOCS": "100",
    }
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [WorkerProcess(tiny_checkpoint, env, log, "--batch-max-size", "32") for log in logs]
    store = MemoryStore(db_url, auto_migrate=True)
    try:
        wait_for(
            lambda: sum(store.stored_offsets(group, f"{prefix}.clean").values()) == 800, 240, "the stream"
        )
        assert [w.stop() for w in workers] == [0, 0]
    finally:
        for w in workers:
            if w.alive():
                w.kill()
    expected = {__import__("json").loads(v)["id"] for _, v in msgs}
    assert_consistent(store, expected, group, f"{prefix}.clean", 800)
    stored_by = [
        sum(1 for e in log_events(log) if e.get("event") == "batch stored" and e.get("inserted"))
        for log in logs
    ]
    assert all(n > 0 for n in stored_by), f"both workers must have stored batches: {stored_by}"
    versions = store.codebook_versions()
    assert len(versions) >= 3
    assert [v.parent_version for v in versions] == [None, *[v.version for v in versions[:-1]]]
    store.close()
