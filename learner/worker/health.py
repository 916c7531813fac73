"""Prometheus metrics and the health endpoint of the learner worker.

``GET /metrics`` serves the Prometheus text format; ``GET /healthz`` answers 200 with a JSON
status while the main loop is alive (polled within ``stale_after_s``) and 503 otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


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
        self.docs_per_second = Gauge(
            "mbc_learner_documents_per_second", "recent stored documents/s", registry=r
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
        self.last_poll = time.monotonic()
        self.status: dict[str, Any] = {}
        self._window: list[tuple[float, int]] = []

    def stored(self, n: int) -> None:
        now = time.monotonic()
        self._window.append((now, n))
        self._window = [(t, k) for t, k in self._window if now - t <= 30.0]
        span = max(now - self._window[0][0], 1.0)
        self.docs_per_second.set(sum(k for _, k in self._window) / span)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """/metrics and /healthz on a background thread."""

    def __init__(
        self, metrics: WorkerMetrics, port: int, host: str = "0.0.0.0", stale_after_s: float = 120.0
    ) -> None:
        m = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype, code = m.exposition(), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/healthz"):
                    alive = time.monotonic() - m.last_poll < stale_after_s
                    body = json.dumps({"alive": alive, **m.status}).encode()
                    ctype, code = "application/json", 200 if alive else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
