"""Prometheus metrics and the health endpoint of the learner worker.

Served by prometheus_client's own WSGI app: ``GET /metrics`` is the Prometheus text format (a
documents/s figure is ``rate(mbc_learner_documents_total[1m])``); ``GET /healthz`` answers 200
with a JSON status while the main loop is alive (it beat within ``stale_after_s``) and 503
otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from arroyo.processing.strategies import ProcessingStrategy
from arroyo.types import Message, TStrategyPayload
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer


class WorkerMetrics:
    """All metrics of one worker process, in their own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.documents = Counter("mbc_learner_documents", "documents newly stored", registry=r)
        self.duplicates = Counter("mbc_learner_duplicates", "documents already in the store", registry=r)
        self.dead_letters = Counter(
            "mbc_learner_dead_letters", "messages sent to the DLQ", ["reason"], registry=r
        )
        self.batches = Counter("mbc_learner_batches", "batches made durable", registry=r)
        self.batch_seconds = Histogram(
            "mbc_learner_batch_seconds",
            "consume-to-commit latency of a batch",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.encode_seconds = Histogram(
            "mbc_learner_encode_seconds", "tokenize+amortize+quantize time", registry=r
        )
        self.consumer_lag = Gauge(
            "mbc_learner_consumer_lag", "messages behind the log end", ["partition"], registry=r
        )
        self.gpu_memory = Gauge("mbc_learner_gpu_memory_bytes", "allocated CUDA memory", registry=r)
        self.store_up = Gauge("mbc_learner_store_up", "1 when the last store write succeeded", registry=r)
        self.codebook_version = Gauge("mbc_learner_codebook_version", "codebook version in use", registry=r)
        self.codebook_perplexity = Gauge(
            "mbc_learner_codebook_perplexity", "code-usage perplexity", registry=r
        )
        self.codebook_dead = Gauge(
            "mbc_learner_codebook_dead_codes", "codes under the usage threshold", registry=r
        )
        self.codebook_resets = Counter("mbc_learner_codebook_resets", "dead codes re-seeded", registry=r)
        self.quant_error = Gauge(
            "mbc_learner_quantization_error", "mean squared quantization error", registry=r
        )
        self.bank_bytes = Gauge("mbc_learner_bank_bytes", "packed code bytes in the store", registry=r)
        self.store_up.set(1)
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        """The main loop is alive (called on every poll of the consumer loop)."""
        self.last_beat = time.monotonic()


class HealthServer:
    """/metrics (prometheus_client's WSGI app) and /healthz on a background thread."""

    def __init__(
        self, metrics: WorkerMetrics, port: int, host: str = "0.0.0.0", stale_after_s: float = 120.0
    ) -> None:
        self.metrics, self.stale_after_s = metrics, stale_after_s
        self._metrics_app = make_wsgi_app(metrics.registry)
        self.server = make_server(host, port, self._app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = int(self.server.server_port)
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)
        self.thread.start()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/healthz"):
            age = time.monotonic() - self.metrics.last_beat
            alive = age < self.stale_after_s
            body = json.dumps({"alive": alive, "seconds_since_beat": round(age, 3)}).encode()
            status = "200 OK" if alive else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class Heartbeat(ProcessingStrategy[TStrategyPayload]):
    """First step of the chain: every poll of the consumer loop is a heartbeat for /healthz."""

    def __init__(self, metrics: WorkerMetrics, next_step: ProcessingStrategy[TStrategyPayload]) -> None:
        self.metrics, self.next_step = metrics, next_step

    def submit(self, message: Message[TStrategyPayload]) -> None:
        self.next_step.submit(message)

    def poll(self) -> None:
        self.metrics.beat()
        self.next_step.poll()

    def join(self, timeout: float | None = None) -> None:
        self.next_step.join(timeout)

    def close(self) -> None:
        self.next_step.close()

    def terminate(self) -> None:
        self.next_step.terminate()
