"""Assembling and running the learner worker: consumer, strategy chain, store, codebook, health."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import torch
from arroyo.backends.kafka import KafkaConsumer
from arroyo.backends.kafka.configuration import build_kafka_consumer_configuration
from arroyo.commit import IMMEDIATE
from arroyo.processing import StreamProcessor
from arroyo.processing.strategies import ProcessingStrategy, ProcessingStrategyFactory, Reduce
from arroyo.types import BaseValue, Commit, Partition, Topic
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.kafka import confluent_config, ensure_topics
from infra.logging import get_logger
from infra.shutdown import ShutdownRequest
from learner.inference.encode import TextEncoder
from learner.worker.batch import (
    DeadLetter,
    DeadLetterUndelivered,
    PreparedBatch,
    RawMessage,
    Tokenized,
    encode,
    tokenize,
)
from learner.worker.health import HealthServer, Heartbeat, WorkerMetrics
from learner.worker.online_codebook import OnlineCodebook
from learner.worker.pipeline import PipelinedStore
from learner.worker.settings import WorkerSettings
from learner.worker.step import StoreStep
from memory_store.errors import StoreUnavailable
from memory_store.protocol import Store
from memory_store.text_sketch import TextSketch

log = get_logger(__name__)
DLQ_FLUSH_S = 10.0


class Worker:
    """The BatchSink of :class:`StoreStep`: everything a batch touches, in one object."""

    def __init__(
        self, settings: WorkerSettings, encoder: TextEncoder, store: Store, metrics: WorkerMetrics
    ) -> None:
        self.settings, self.encoder, self.store, self.metrics = settings, encoder, store, metrics
        self.codebook = OnlineCodebook(
            store,
            encoder.device,
            mode=settings.codebook,
            decay=settings.ema_decay,
            dead_threshold=settings.dead_code_threshold,
            publish_every_docs=settings.publish_every_docs,
            book=encoder.codebook,
        )
        self._dlq: Producer | None = None
        self.started = time.monotonic()
        self.sketch = TextSketch()  # the store's text key (memory_store.text_sketch)

    def start(self) -> None:
        usage = getattr(getattr(self.encoder, "model", None), "codebook", None)
        initial_usage = usage.usage.detach().float().cpu() if usage is not None else None
        version = self.codebook.bootstrap(self.encoder.initial_codebook().cpu(), initial_usage)
        self.metrics.codebook_version.set(version)
        log.info(
            "worker ready",
            codebook_version=version,
            device=str(self.encoder.device),
            mode=self.settings.codebook,
            pipeline_depth=self.settings.pipeline_depth,
        )

    # -- BatchSink -------------------------------------------------------------------------------

    def prepare(
        self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]
    ) -> PreparedBatch:
        return self.encode(self.tokenize(messages, committable))

    def tokenize(self, messages: list[RawMessage], committable: Mapping[tuple[str, int], int]) -> Tokenized:
        sketch = self.sketch if self.settings.text_sketch else None
        return tokenize(messages, committable, self.settings.group_id, self.encoder, sketch)

    def encode(self, batch: Tokenized) -> PreparedBatch:
        prepared = encode(batch, self.encoder, self.codebook)
        self.metrics.encode_seconds.observe(prepared.encode_s)  # tokenize + amortize + quantize
        return prepared

    def dead_letter(self, letters: list[DeadLetter]) -> None:
        if self._dlq is None:
            self._dlq = Producer(confluent_config(self.settings.kafka, **{"enable.idempotence": True}))
        failures: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        for d in letters:
            record = d.record()
            self._dlq.produce(
                self.settings.topics.dlq,
                key=record.key,
                value=record.value,
                headers=list[tuple[str, str | bytes | None]](record.headers),
                on_delivery=report,
            )
        remaining = self._dlq.flush(DLQ_FLUSH_S)
        if remaining or failures:
            # StoreStep retries the batch with backoff (partitions paused) until the broker confirms.
            raise DeadLetterUndelivered(
                f"dead-letter delivery failed: {failures[:1] or [f'{remaining} undelivered']}"
            )
        for d in letters:
            self.metrics.dead_letters.labels(d.reason).inc()
            log.warning("dead-lettered", reason=d.reason, detail=d.detail[:200], offset=d.message.offset)

    def write(self, batch: PreparedBatch) -> None:
        try:
            result = self.store.write_batch(batch.records, batch.offsets)
        except StoreUnavailable:
            self.metrics.store_up.set(0)  # StoreStep keeps the batch and retries; /metrics shows the outage
            raise
        self.metrics.store_up.set(1)
        self.metrics.documents.inc(result.inserted_count)
        self.metrics.duplicates.inc(len(result.duplicates))
        log.info(
            "batch stored",
            batch_id=batch.batch_id,
            inserted=result.inserted_count,
            duplicates=len(result.duplicates),
            dead_letters=len(batch.dead_letters),
            codebook_version=batch.records[0].codebook_version if batch.records else None,
            encode_ms=round(batch.encode_s * 1000, 1),
            tokenize_ms=round(getattr(batch, "tokenize_s", 0.0) * 1000, 1),  # part of encode_ms
        )

    def after_store(self, batch: PreparedBatch) -> None:
        self.metrics.batches.inc()
        with self.codebook.lock:  # the pipeline's encode stage quantizes meanwhile
            self._maintain_codebook(batch)
        if torch.cuda.is_available():
            self.metrics.gpu_memory.set(torch.cuda.memory_allocated())

    def _maintain_codebook(self, batch: PreparedBatch) -> None:
        if batch.z is not None and batch.codes is not None and batch.sq_error is not None:
            version = batch.records[0].codebook_version if batch.records else None
            self.codebook.observe(batch.z, batch.codes, batch.sq_error, version)
            self.metrics.quant_error.set(float(batch.sq_error.mean()))
        if self.codebook.due():
            obs = self.codebook.obs
            new = self.codebook.publish()
            if obs is not None:
                from learner.model.codebook_math import grouped_perplexity

                self.metrics.codebook_perplexity.set(
                    float(grouped_perplexity(obs.counts, self.codebook.groups))
                )
            if new is not None:
                info = self.store.codebook_info(new)
                self.metrics.codebook_resets.inc(info.health.resets or 0)
                self.metrics.codebook_dead.set(info.health.dead_codes or 0)
        self.metrics.codebook_version.set(self.codebook.version)

    def close(self) -> None:
        try:
            if self.codebook.record_health():
                log.info("recorded the health of the codebook version in use", version=self.codebook.version)
        except Exception as e:  # the store may be away at shutdown: health is informative only
            log.warning(
                "could not record codebook health at shutdown",
                error=(str(e).splitlines() or [type(e).__name__])[0][:200],
            )
        if self._dlq is not None:
            self._dlq.flush(10)


class _Factory(ProcessingStrategyFactory[Any]):
    def __init__(self, worker: Worker, consumer: KafkaConsumer) -> None:
        self.worker, self.consumer = worker, consumer

    def create_with_partitions(
        self, commit: Commit, partitions: Mapping[Partition, int]
    ) -> ProcessingStrategy[Any]:
        s = self.worker.settings
        log.info("partitions assigned", partitions=sorted(p.index for p in partitions))
        self._resume_from_store(partitions)

        def accumulate(acc: list[BaseValue[Any]], value: BaseValue[Any]) -> list[BaseValue[Any]]:
            acc.append(value)
            return acc

        return Heartbeat(
            self.worker.metrics,
            Reduce(
                s.batch_max_size,
                s.batch_max_wait_s,
                accumulate,
                list,
                self._terminal(commit),
            ),
        )

    def _terminal(self, commit: Commit) -> ProcessingStrategy[list[BaseValue[Any]]]:
        """Serial (depth 1, one batch prepared and written on the consumer's thread) or pipelined."""
        s = self.worker.settings
        if s.pipeline_depth <= 1:
            return StoreStep(self.worker, commit, s.store_retry_max_s)
        return PipelinedStore(self.worker, commit, s.pipeline_depth, s.store_retry_max_s)

    def _resume_from_store(self, partitions: Mapping[Partition, int]) -> None:
        """Seek past what the store already holds: the store's offsets, written with the documents,
        are the source of truth; Kafka's may lag by the batches committed there just before a crash.
        Skipping this is safe (writes are idempotent by id), only slower."""
        s = self.worker.settings
        try:
            stored = self.worker.store.stored_offsets(s.group_id, s.topics.clean)
            ahead = {p: stored[p.index] for p, o in partitions.items() if stored.get(p.index, -1) > o}
            if ahead:
                self.consumer.seek(ahead)
                log.info("resuming from the store's offsets", offsets={p.index: o for p, o in ahead.items()})
        except Exception as e:  # store down or seek refused: re-reading is harmless
            log.warning("could not resume from the store's offsets; re-reading instead", error=str(e)[:200])


def _lag_updater(
    settings: WorkerSettings, store: Store, metrics: WorkerMetrics, stop: threading.Event
) -> None:
    """Every 10 s: log-end offsets minus the offsets the store holds, per partition."""
    consumer = Consumer(confluent_config(settings.kafka, **{"group.id": settings.group_id + "-lag"}))
    topic = settings.topics.clean
    try:
        while not stop.wait(10.0):
            try:
                md = consumer.list_topics(topic, timeout=5)
                stored = store.stored_offsets(settings.group_id, topic)
                for p in md.topics[topic].partitions:
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                    metrics.consumer_lag.labels(str(p)).set(max(0, high - stored.get(p, 0)))
                metrics.bank_bytes.set(store.stats().code_bytes)
            except Exception as e:  # lag is informative; never let it stop the worker
                log.debug("lag update failed", error=str(e))
    finally:
        consumer.close()


def run_worker(
    settings: WorkerSettings,
    encoder: TextEncoder,
    store: Store,
    shutdown: ShutdownRequest | None = None,
) -> int:
    """Consume until SIGINT/SIGTERM; returns the exit code (0 after a clean shutdown)."""
    shutdown = shutdown or ShutdownRequest.install()
    if shutdown.event.is_set():
        return 0
    metrics = WorkerMetrics()
    worker = Worker(settings, encoder, store, metrics)
    worker.start()
    ensure_topics(settings.kafka, settings.topics, [settings.topics.clean, settings.topics.dlq])
    health = HealthServer(metrics, settings.metrics_port) if settings.metrics_port is not None else None
    if health is not None:
        log.info("health and metrics", url=f"http://0.0.0.0:{health.port}/healthz")
    conf = build_kafka_consumer_configuration(
        confluent_config(settings.kafka),
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        strict_offset_reset=False,
    )
    consumer = KafkaConsumer(conf)
    processor: StreamProcessor[Any] = StreamProcessor(
        consumer, Topic(settings.topics.clean), _Factory(worker, consumer), IMMEDIATE
    )
    shutdown.on_request(processor.signal_shutdown)
    lag = threading.Thread(target=_lag_updater, args=(settings, store, metrics, shutdown.event), daemon=True)
    lag.start()
    try:
        processor.run()
    finally:
        shutdown.event.set()
        worker.close()
        if health is not None:
            health.close()
        shutdown.restore()
    log.info("worker stopped cleanly")
    return 0
