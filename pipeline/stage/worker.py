"""`mbc pipeline run`: prepare topics, start the metrics endpoint, run the faust worker until
SIGINT/SIGTERM (then it commits what it processed and exits 0)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from infra.errors import BrokerError
from infra.kafka import confluent_config, ensure_topics
from infra.logging import get_logger
from pipeline.errors import PipelineError
from pipeline.settings import PipelineSettings
from pipeline.stage.app import build_app
from pipeline.stage.faust_config import changelog_topic
from pipeline.stage.metrics import StageMetrics

log = get_logger(__name__)


def ensure_changelog(settings: PipelineSettings) -> str:
    """Create the table's changelog topic, compacted, with the raw topic's partition count.

    Returns ``"exists"``, ``"created"`` or ``"auto"`` (the mock broker cannot create topics: a
    metadata request makes it auto-create the changelog, uncompacted — fine for tests and demos).
    """
    name = changelog_topic(settings)
    admin = AdminClient(confluent_config(settings.kafka))
    try:
        md = admin.list_topics(timeout=10)
    except KafkaException as e:
        raise BrokerError(
            f"cannot reach Kafka at {settings.kafka.resolved_bootstrap()}: {e.args[0].str()}"
        ) from e
    if name in md.topics:
        return "exists"
    if md.controller_id < 0 or (md.cluster_id or "").startswith("mockCluster"):
        # librdkafka's mock cluster never answers CreateTopics; a metadata request auto-creates.
        Producer(confluent_config(settings.kafka)).list_topics(name, timeout=10)
        log.warning("broker cannot create topics; changelog topic auto-created, uncompacted", topic=name)
        return "auto"
    topic = NewTopic(
        name,
        settings.topics.partitions,
        settings.topics.replication_factor,
        config={"cleanup.policy": "compact"},
    )
    for fut in admin.create_topics([topic], request_timeout=5).values():
        try:
            fut.result()
        except KafkaException as e:
            err: Any = e.args[0]
            if err.name() == "TOPIC_ALREADY_EXISTS":
                return "exists"
            # The mock broker names a controller but never answers CreateTopics.
            log.warning("changelog topic not created; relying on auto-creation", topic=name, error=err.str())
            return "auto"
    log.info("created changelog topic", topic=name, partitions=settings.topics.partitions)
    return "created"


def run_stage(settings: PipelineSettings) -> None:
    """Run the stage in this process until a signal stops it (raises SystemExit with the exit code)."""
    import faust

    ensure_topics(settings.kafka, settings.topics)
    ensure_changelog(settings)
    metrics = StageMetrics()
    if settings.metrics_port is not None:
        try:
            port = metrics.serve(settings.metrics_host, settings.metrics_port)
        except OSError as e:
            where = f"{settings.metrics_host}:{settings.metrics_port}"
            raise PipelineError(f"cannot serve metrics on {where}: {e.strerror}") from e
        log.info("metrics endpoint", url=f"http://{settings.metrics_host}:{port}/metrics")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings, metrics)
    log.info(
        "stage starting",
        app_id=settings.app_id,
        raw=settings.topics.raw,
        clean=settings.topics.clean,
        dlq=settings.topics.dlq,
        dedup_window_s=settings.dedup_window_s,
    )
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    worker.execute_from_commandline()
