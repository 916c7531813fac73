"""The faust app: one agent reading the raw topic as bytes, writing clean documents and DLQ entries.

The raw topic is read with ``value_serializer="raw"``: faust never decodes anything itself, so a
decode error cannot end the agent's loop (an exception escaping ``async for event in
stream.events()`` *acks* the event — faust restarts the agent and the message is gone; see
NOTES.md). Every per-message problem becomes a Step (``pipeline.stage.logic``); only a failure to
write to Kafka is fatal, and then the process exits at once without committing, so the message
is processed again after a restart (the same holds for a bug in the state handling).

Outputs keep the raw partition number (order per source is kept end to end) and carry provenance
headers ``mbc-source-topic``, ``mbc-source-partition``, ``mbc-source-offset``, ``mbc-source-timestamp``.
A DLQ message's key is the raw key and its value the original bytes (the first ``dlq_max_bytes``
of them), with the headers of :mod:`pipeline.dead_letter` (the learner writes the same format).
"""

from __future__ import annotations

import os
from typing import Any

from infra.logging import get_logger
from pipeline.dead_letter import DeadLetterRecord, dead_letter_record, provenance_headers
from pipeline.settings import PipelineSettings
from pipeline.stage.faust_config import TABLE_NAME, app_config, complete_buffer_flush, limit_fetch_wait
from pipeline.stage.logic import Outcome, StageLogic, Step
from pipeline.stage.metrics import StageMetrics

log = get_logger(__name__)

AGENT_NAME = "clean-documents"
EXIT_UNPROCESSED = 75


def dlq_message(
    step: Step,
    message_key: bytes | None,
    value: bytes | None,
    max_bytes: int,
    *,
    where: tuple[str, int, int, int],
) -> DeadLetterRecord:
    """The dead-letter message for a rejected ``step``; ``where``: (topic, partition, offset, timestamp ms)."""
    assert step.rejection is not None
    topic, partition, offset, timestamp_ms = where
    return dead_letter_record(
        key=message_key,
        value=value,
        reason=step.rejection.reason.value,
        detail=step.rejection.detail,
        stage="pipeline",
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        max_bytes=max_bytes,
    )


def build_app(settings: PipelineSettings, metrics: StageMetrics) -> Any:
    """The configured faust app with its agent and table (faust is imported here, not at module load)."""
    import faust

    limit_fetch_wait(settings.fetch_max_wait_ms)
    complete_buffer_flush()
    app = faust.App(settings.app_id, **app_config(settings))
    raw = app.topic(settings.topics.raw, key_serializer="raw", value_serializer="raw", allow_empty=True)
    clean = app.topic(settings.topics.clean, key_serializer="raw", value_serializer="raw")
    dlq = app.topic(settings.topics.dlq, key_serializer="raw", value_serializer="raw")
    table = app.Table(TABLE_NAME, default=None, partitions=settings.topics.partitions, key_type=str)
    logic = StageLogic(table, settings.limits(), window_ms=int(settings.dedup_window_s * 1000))

    async def emit(step: Step, message: Any, timestamp_ms: int) -> None:
        where = (message.topic, message.partition, message.offset, timestamp_ms)
        if step.outcome is Outcome.ACCEPTED and step.document is not None:
            doc = step.document
            headers = provenance_headers(*where)
            await clean.send(key=doc.key, value=doc.to_json(), partition=message.partition, headers=headers)
        elif step.outcome is Outcome.REJECTED:
            letter = dlq_message(step, message.key, message.value, settings.dlq_max_bytes, where=where)
            await dlq.send(
                key=letter.key, value=letter.value, partition=message.partition, headers=letter.headers
            )

    @app.agent(raw, name=AGENT_NAME)
    async def clean_documents(stream: Any) -> None:
        async for event in stream.events():
            m = event.message
            timestamp_ms = int(m.timestamp * 1000) if m.timestamp else 0
            try:
                step = logic.process(m.partition, m.offset, timestamp_ms, m.key, m.value)
                await emit(step, m, timestamp_ms)
            except Exception:
                # Leaving the loop would ack the event; exit without committing instead.
                log.critical(
                    "cannot process or write a message; exiting without committing so it is processed again",
                    partition=m.partition,
                    offset=m.offset,
                    exc_info=True,
                )
                os._exit(EXIT_UNPROCESSED)
            metrics.record(step)
            if step.rejection is not None and not step.replay:
                log.info(
                    "dead-lettered",
                    partition=m.partition,
                    offset=m.offset,
                    reason=step.rejection.reason.value,
                    detail=step.rejection.detail[:200],
                )

    return app
