"""The worker's /metrics and /healthz (prometheus_client's WSGI app) and the loop heartbeat."""

from __future__ import annotations

import time
from typing import Any

import httpx
from arroyo.processing.strategies import ProcessingStrategy

from learner.worker.health import HealthServer, Heartbeat, WorkerMetrics


class _Next(ProcessingStrategy[Any]):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def submit(self, message: Any) -> None:
        self.calls.append("submit")

    def poll(self) -> None:
        self.calls.append("poll")

    def join(self, timeout: float | None = None) -> None:
        self.calls.append("join")

    def close(self) -> None:
        self.calls.append("close")

    def terminate(self) -> None:
        self.calls.append("terminate")


def test_metrics_and_healthz_follow_the_heartbeat() -> None:
    metrics = WorkerMetrics()
    metrics.documents.inc(7)
    metrics.dead_letters.labels("unencodable").inc(2)
    server = HealthServer(metrics, 0, host="127.0.0.1", stale_after_s=0.5)
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = httpx.get(f"{base}/metrics", timeout=5).text
        assert "mbc_learner_documents_total 7.0" in text
        assert 'mbc_learner_dead_letters_total{reason="unencodable"} 2.0' in text
        ok = httpx.get(f"{base}/healthz", timeout=5)
        assert ok.status_code == 200 and ok.json()["alive"] is True
        metrics.last_beat = time.monotonic() - 10.0  # the loop stopped polling
        stale = httpx.get(f"{base}/healthz", timeout=5)
        assert stale.status_code == 503 and stale.json()["alive"] is False
        step = Heartbeat(metrics, _Next())
        step.poll()  # the consumer loop polls again: alive
        again = httpx.get(f"{base}/healthz", timeout=5)
        assert again.status_code == 200
    finally:
        server.close()


def test_heartbeat_delegates_every_call() -> None:
    metrics, nxt = WorkerMetrics(), _Next()
    step = Heartbeat(metrics, nxt)
    metrics.last_beat = 0.0
    step.submit(object())
    step.poll()
    step.join(1.0)
    step.close()
    step.terminate()
    assert nxt.calls == ["submit", "poll", "join", "close", "terminate"]
    assert metrics.last_beat > 0.0


def test_store_up_gauge_drops_during_an_outage_and_recovers() -> None:
    from types import SimpleNamespace

    import torch

    from learner.worker.run import Worker
    from learner.worker.settings import WorkerSettings
    from memory_store.errors import StoreUnavailable

    class FlakyStore:
        def __init__(self) -> None:
            self.down = True

        def write_batch(self, records: Any, offsets: Any) -> Any:
            if self.down:
                raise StoreUnavailable("connection refused")
            return SimpleNamespace(inserted_count=len(records), duplicates=[])

    metrics, store = WorkerMetrics(), FlakyStore()
    encoder = SimpleNamespace(device=torch.device("cpu"), codebook=None)
    worker = Worker(WorkerSettings(), encoder, store, metrics)  # type: ignore[arg-type]
    batch = SimpleNamespace(records=[], offsets=[], batch_id="b", dead_letters=[], encode_s=0.0)
    gauge = lambda: metrics.registry.get_sample_value("mbc_learner_store_up")  # noqa: E731
    assert gauge() == 1.0
    try:
        worker.write(batch)  # type: ignore[arg-type]
        raise AssertionError("the outage must reach StoreStep")
    except StoreUnavailable:
        pass
    assert gauge() == 0.0
    store.down = False
    worker.write(batch)  # type: ignore[arg-type]
    assert gauge() == 1.0
