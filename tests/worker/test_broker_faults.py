"""Fault: the broker stops answering mid-stream (its process frozen longer than the consumer's
session timeout, as in a network partition), then comes back. The worker neither crashes nor
loses or duplicates a document."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from infra.broker import BrokerProcess
from memory_store.store import MemoryStore
from tests.worker.conftest import WorkerProcess, documents, log_events, produce, wait_for, worker_env
from tests.worker.test_worker_e2e import assert_consistent


@pytest.mark.slow
def test_broker_partition_mid_stream_loses_and_duplicates_nothing(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    prefix, group, total = f"partition-{uuid.uuid4().hex[:6]}", "learner-partition", 400
    topic = f"{prefix}.clean"
    db_url = f"sqlite:///{tmp_path / 'partition.db'}"
    msgs = documents(total)
    log = tmp_path / "worker.log"
    with BrokerProcess() as broker:  # its own broker: freezing the shared one would stall other tests
        assert broker.proc is not None
        env = {
            **worker_env(broker.bootstrap_servers, db_url, group, prefix),
            "MBC_KAFKA__EXTRA": '{"session.timeout.ms": "6000"}',
        }
        store = MemoryStore(db_url, auto_migrate=True)
        produce(broker.bootstrap_servers, topic, msgs[:200])
        worker = WorkerProcess(tiny_checkpoint, env, log, "--batch-max-size", "32")
        try:
            wait_for(lambda: sum(store.stored_offsets(group, topic).values()) > 0, 120, "a first batch")
            os.kill(broker.proc.pid, signal.SIGSTOP)  # every connection hangs; nothing is refused
            try:
                time.sleep(12)  # twice the session timeout
                assert worker.alive(), log.read_text()[-3000:]
            finally:
                os.kill(broker.proc.pid, signal.SIGCONT)
            produce(broker.bootstrap_servers, topic, msgs[200:])
            wait_for(lambda: sum(store.stored_offsets(group, topic).values()) == total, 180, "catching up")
            assert worker.alive(), log.read_text()[-3000:]
            assert worker.stop() == 0
        finally:
            if worker.alive():
                worker.kill()
        events = [e.get("event") for e in log_events(log)]
        # the frozen broker cost the worker its group membership; it rejoined instead of crashing
        assert events.count("partitions assigned") >= 2, events
        assert_consistent(store, {json.loads(v)["id"] for _, v in msgs}, group, topic, total)
        store.close()
