"""Faults: SIGKILL at random moments loses and duplicates nothing; a store outage pauses the
worker instead of crashing it or dropping documents."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from pathlib import Path

import pytest

from infra.throwaway_postgres import ThrowawayPostgres
from memory_store.store import MemoryStore
from tests.worker.conftest import WorkerProcess, documents, log_events, produce, wait_for, worker_env
from tests.worker.test_worker_e2e import assert_consistent


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    broker: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    prefix, group, total = f"crash-{uuid.uuid4().hex[:6]}", "learner-crash", 5000
    topic = f"{prefix}.clean"
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    msgs = documents(total)
    # A killed member stays in the group until its session times out; keep that short here.
    env = {**worker_env(broker, db_url, group, prefix), "MBC_KAFKA__EXTRA": '{"session.timeout.ms": "6000"}'}
    log = tmp_path / "worker.log"
    log.touch()
    rng = random.Random(7)

    def stream() -> None:  # documents keep arriving while the worker is killed and restarted
        for i in range(0, total, 250):
            produce(broker, topic, msgs[i : i + 250])
            time.sleep(0.4)

    producer = threading.Thread(target=stream, daemon=True)
    producer.start()
    store = MemoryStore(db_url, auto_migrate=True)
    kills = 0
    progress = []
    while kills < 12:
        before = log.read_text().count("partitions assigned")
        worker = WorkerProcess(tiny_checkpoint, env, log, "--batch-max-size", str(rng.choice([16, 50, 128])))
        if kills % 4 == 3:
            time.sleep(rng.uniform(0.5, 4.0))  # during start-up
        else:
            wait_for(
                lambda n=before: log.read_text().count("partitions assigned") > n, 60, "an assignment", 0.1
            )
            time.sleep(rng.uniform(0.2, 3.0))  # mid-stream, mostly mid-batch
        worker.kill()
        kills += 1
        progress.append(sum(store.stored_offsets(group, topic).values()))
    producer.join()
    before = log.read_text().count("worker ready")
    final = WorkerProcess(tiny_checkpoint, env, log, "--batch-max-size", "128")
    try:
        wait_for(lambda: log.read_text().count("worker ready") > before, 120, "the final worker to start")
        wait_for(
            lambda: sum(store.stored_offsets(group, topic).values()) == total, 300, "the rest of the stream"
        )
        assert final.stop() == 0
    finally:
        if final.alive():
            final.kill()
    assert progress[-1] > 0, f"the killed workers never stored anything: {progress}"
    expected = {json.loads(v)["id"] for _, v in msgs}
    assert_consistent(store, expected, group, topic, total)
    store.close()


@pytest.mark.slow
def test_store_outage_pauses_instead_of_losing(broker: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    prefix, group = f"outage-{uuid.uuid4().hex[:6]}", "learner-outage"
    topic = f"{prefix}.clean"
    msgs = documents(600)
    with ThrowawayPostgres() as pg:
        store = MemoryStore(pg.url, auto_migrate=True)
        env = {**worker_env(broker, pg.url, group, prefix), "MBC_STORE_RETRY_MAX_S": "2"}
        log = tmp_path / "worker.log"
        produce(broker, topic, msgs[:200])
        worker = WorkerProcess(tiny_checkpoint, env, log, "--batch-max-size", "32")
        try:
            wait_for(lambda: sum(store.stored_offsets(group, topic).values()) == 200, 120, "the first part")
            store.engine.dispose()
            pg.halt()
            produce(broker, topic, msgs[200:])
            time.sleep(30)  # the store is away for 30 s while documents keep coming
            assert worker.alive(), log.read_text()[-3000:]
            pg.resume()
            wait_for(lambda: sum(store.stored_offsets(group, topic).values()) == 600, 180, "catching up")
            assert worker.stop() == 0
        finally:
            if worker.alive():
                worker.kill()
        events = [e.get("event") for e in log_events(log)]
        assert "store unavailable; pausing consumption and retrying" in events
        assert "store reachable again; resuming" in events
        assert_consistent(store, {json.loads(v)["id"] for _, v in msgs}, group, topic, 600)
        store.close()
