"""Database faults against the running learner on PostgreSQL, one after the other on one worker:
a record the database refuses, writes refused (read-only), statements timing out, a restart
mid-stream. Nothing is lost or duplicated, the worker never exits, and what cannot be stored is
dead-lettered with the store's reason. (SIGKILL mid-batch and a 30 s outage: test_worker_faults.py.)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from infra.throwaway_postgres import ThrowawayPostgres
from memory_store.store import MemoryStore
from pipeline.events import make_document
from tests.worker.conftest import WorkerProcess, documents, log_events, produce, wait_for, worker_env
from tests.worker.test_worker_e2e import assert_consistent, read_topic


def _reconnect_everyone(admin: sa.Engine, db: str) -> None:
    """Drop the worker's sessions so that database-level settings apply to its next ones."""
    with admin.connect() as c:
        c.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
            ),
            {"d": db},
        )


def _set(admin: sa.Engine, db: str, setting: str) -> None:
    with admin.connect() as c:
        c.execute(sa.text(f'ALTER DATABASE "{db}" SET {setting}'))
    _reconnect_everyone(admin, db)


@pytest.mark.slow
def test_database_faults_pause_or_dead_letter_never_crash(
    broker: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    prefix, group = f"dbfault-{uuid.uuid4().hex[:6]}", "learner-dbfault"
    topic = f"{prefix}.clean"
    with ThrowawayPostgres() as pg:
        admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
        db = sa.engine.make_url(pg.url).database
        assert db
        store = MemoryStore(pg.url, auto_migrate=True)
        with store.engine.begin() as c:  # a rule of this deployment the stage knows nothing about
            c.execute(
                sa.text(
                    "ALTER TABLE documents ADD CONSTRAINT no_forbidden CHECK (title NOT LIKE 'forbidden%')"
                )
            )
        env = {**worker_env(broker, pg.url, group, prefix), "MBC_STORE_RETRY_MAX_S": "1"}
        log = tmp_path / "worker.log"
        worker = WorkerProcess(tiny_checkpoint, env, log, "--batch-max-size", "16")
        msgs = documents(120)
        forbidden = [
            make_document(source="wire", ref=f"f-{i}", text=f"forbidden story {i}", title=f"forbidden {i}")
            for i in range(2)
        ]
        refused = [(d.key, d.to_json()) for d in forbidden]
        consumed = lambda: sum(store.stored_offsets(group, topic).values())  # noqa: E731
        try:
            # 1. The database refuses two records (a CHECK constraint): they alone are dead-lettered.
            produce(broker, topic, msgs[:10] + refused[:1] + msgs[10:20] + refused[1:])
            wait_for(lambda: consumed() == 22, 120, "the first documents")
            dlq = read_topic(broker, f"{prefix}.dlq", 2)
            assert sorted(v or b"" for v, _ in dlq) == sorted(v for _, v in refused)
            assert all(
                h["mbc-reason"] == b"store_rejected" and b"no_forbidden" in h["mbc-detail"] for _, h in dlq
            )

            # 2. Writes refused (read-only database): the worker waits, then catches up.
            _set(admin, db, "default_transaction_read_only = on")
            produce(broker, topic, msgs[20:40])
            time.sleep(6)
            assert consumed() == 22 and worker.alive(), log.read_text()[-3000:]
            _set(admin, db, "default_transaction_read_only = off")
            wait_for(lambda: consumed() == 42, 60, "catching up after read-only")

            # 3. Statements time out (a lock held elsewhere, statement_timeout 300 ms).
            _set(admin, db, "statement_timeout = '300ms'")
            blocker = admin.connect()
            blocker.exec_driver_sql("BEGIN")
            blocker.exec_driver_sql("LOCK TABLE consumed_offsets IN EXCLUSIVE MODE")
            produce(broker, topic, msgs[40:60])
            time.sleep(5)
            assert consumed() == 42 and worker.alive(), log.read_text()[-3000:]
            blocker.exec_driver_sql("ROLLBACK")
            blocker.close()
            wait_for(lambda: consumed() == 62, 60, "catching up after the timeouts")
            _set(admin, db, "statement_timeout = 0")

            # 4. The database restarts while documents stream in.
            feeder = threading.Thread(
                target=lambda: [
                    produce(broker, topic, msgs[i : i + 10]) or time.sleep(0.3) for i in range(60, 120, 10)
                ]
            )
            feeder.start()
            time.sleep(0.5)
            store.engine.dispose()
            admin.dispose()
            pg.halt()
            time.sleep(2)
            pg.resume()
            feeder.join()
            wait_for(lambda: consumed() == 122, 120, "catching up after the restart")
            assert worker.alive(), log.read_text()[-3000:]
            assert worker.stop() == 0
        finally:
            if worker.alive():
                worker.kill()
        events = [e.get("event") for e in log_events(log)]
        assert events.count("store unavailable; pausing consumption and retrying") >= 2
        assert "the store refused a document; finding which" in events
        assert_consistent(store, {json.loads(v)["id"] for _, v in msgs}, group, topic, 122)
        store.close()
        admin.dispose()
