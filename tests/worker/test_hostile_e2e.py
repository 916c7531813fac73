"""Hostile input through the real components, once per store backend: a few hundred derandomized
hypothesis events (tests/hostile.py) go to ``docs.raw``; the faust stage and the learner worker run
as processes on the embedded broker; the memory store is SQLite or PostgreSQL.

Invariants: the stage's books balance (raw = clean + duplicates + dead-lettered), the store holds
exactly the clean documents the learner did not dead-letter, every dead letter says why, and
both processes are still running. The issue's reproduction leads the stream: documents with a
300-character source (refused by the stage, per the contract) followed by ordinary ones (stored).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from memory_store.store import MemoryStore
from pipeline.events import make_document
from tests.hostile import sample
from tests.pipeline.conftest import Collector, StageProcess, Topics, precreate
from tests.worker.conftest import WorkerProcess, wait_for, worker_env
from tests.worker.test_worker_e2e import stored_ids

N_HOSTILE = 300


def repro() -> list[tuple[bytes | None, bytes]]:
    long_source = [
        make_document(source="s" * 300, ref=f"long-{i}", text=f"long source {i}") for i in range(4)
    ]
    ordinary = [make_document(source="wire", ref=f"ok-{i}", text=f"an ordinary story {i}") for i in range(6)]
    return [(d.key, d.to_json()) for d in long_source + ordinary]


@pytest.mark.slow
def test_hostile_stream_never_stops_the_learner(
    broker: str, tiny_checkpoint: Path, tmp_path: Path, db_url: str
) -> None:
    stem = f"hostile-{uuid.uuid4().hex[:6]}"
    topics = Topics(f"{stem}.raw", f"{stem}.clean", f"{stem}.dlq")
    precreate(broker, [topics.raw, topics.clean, topics.dlq])
    lead = repro()
    events = lead + sample(N_HOSTILE)
    stage = StageProcess(
        broker, topics, tmp_path, f"stage-{stem}", MBC_MAX_TEXT_BYTES="2000", MBC_MAX_MESSAGE_BYTES="20000"
    )
    out = Collector(broker, topics.clean, topics.dlq)
    group = f"learner-{stem}"
    log = tmp_path / "worker.log"
    worker = WorkerProcess(
        tiny_checkpoint, worker_env(broker, db_url, group, stem), log, "--batch-max-size", "32"
    )
    store = MemoryStore(db_url, auto_migrate=True)
    try:
        stage.start()
        producer = Producer({"bootstrap.servers": broker, "linger.ms": 20})
        for key, value in events:
            producer.produce(topics.raw, key=key, value=value)
        assert producer.flush(30) == 0
        out.wait_for(lambda: stage.decided() == len(events), 120, "the stage to decide everything", stage)
        m = stage.metrics()
        accepted = int(m["mbc_pipeline_accepted_total"])
        out.wait_for(lambda: len(out.of(topics.clean)) >= accepted, 60, "the clean documents", stage)
        wait_for(
            lambda: sum(store.stored_offsets(group, topics.clean).values()) == accepted,
            180,
            f"the learner to consume {accepted} documents (log: {log})",
        )
        assert worker.alive(), log.read_text()[-3000:]
        assert stage.proc is not None and stage.proc.poll() is None, stage.log()
        rejected = sum(v for k, v in m.items() if k.startswith("mbc_pipeline_rejected_total"))
        out.wait_for(lambda: len(out.of(topics.dlq)) >= rejected, 30, "the dead letters", stage)
    finally:
        if worker.alive():
            worker.kill()
        stage.close()
        out.close()
    clean, dlq = out.of(topics.clean), out.of(topics.dlq)
    by_stage = {"pipeline": [r for r in dlq if r.header("mbc-stage") == "pipeline"]}
    by_stage["learner"] = [r for r in dlq if r.header("mbc-stage") == "learner"]
    duplicates = int(m["mbc_pipeline_duplicate_total"])
    # The stage's books: every raw event is clean, a duplicate or dead-lettered, exactly once.
    assert accepted + duplicates + rejected == len(events)
    assert len(clean) == accepted and len(by_stage["pipeline"]) == rejected
    assert len(by_stage["pipeline"]) + len(by_stage["learner"]) == len(dlq)
    assert all(r.header("mbc-reason") and r.header("mbc-detail") for r in dlq)
    # The store: the clean documents minus what the learner dead-lettered (duplicate ids once).
    learner_dead = {json.loads(r.value or b"")["id"] for r in by_stage["learner"]}
    clean_ids = {json.loads(r.value or b"")["id"] for r in clean}
    assert set(stored_ids(store)) == clean_ids - learner_dead
    assert not learner_dead, [r.header("mbc-detail") for r in by_stage["learner"]]  # one contract
    # The reproduction: the 300-character sources stopped at the stage; what followed is stored.
    reasons = {r.header("mbc-original-sha256"): r.header("mbc-reason") for r in by_stage["pipeline"]}
    assert [reasons.get(hashlib.sha256(v).hexdigest()) for _, v in lead[:4]] == ["invalid_field"] * 4
    assert {json.loads(v)["id"] for _, v in lead[4:]} <= set(stored_ids(store))
    assert accepted > 50 and rejected > 100 and len({r.header("mbc-reason") for r in dlq}) >= 6
    store.close()
