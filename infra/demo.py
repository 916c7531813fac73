"""``mbc demo``: the main job end to end on the embedded default, with no external services.

Foundation stage: the pipeline, store and learner are not built yet, so the demo starts the
embedded broker in a child process, creates the topics (falling back to auto-creation on the
mock cluster), publishes a handful of documents to ``docs.raw`` and reads them back through a
consumer group, then stops everything it started. Later stages extend it to the full flow.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from infra.settings import ServiceSettings, load_settings

SAMPLE = [
    ("demo-1", "Port of Valdria", "The port of Valdria reopened after the storm, officials said on Monday."),
    ("demo-2", "Orlen Mining", "Orlen Mining reported quarterly output of 4.2 million tonnes of copper."),
    ("demo-3", "Kessa Air", "Kessa Air will add three routes from its Tarn hub next spring."),
]


class DemoSettings(ServiceSettings):
    """The demo runs everything locally; it has only logging settings of its own."""

    section = "demo"


def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the documents to come back.")] = 60.0,
) -> None:
    """Run the main job end to end on the embedded broker and SQLite, then clean up."""
    from confluent_kafka import Consumer, Producer

    from infra.broker import BrokerProcess
    from infra.kafka import confluent_config, ensure_topics
    from infra.logging import configure_logging
    from infra.settings import KafkaSettings, TopicSettings

    settings = load_settings(DemoSettings)
    configure_logging("demo", settings.log_level, settings.log_json)
    topics = TopicSettings()
    with BrokerProcess() as broker:
        typer.echo(f"embedded broker at {broker.bootstrap_servers}")
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        mode = ensure_topics(kafka, topics)
        typer.echo(f"topics {topics.raw}, {topics.clean}, {topics.dlq}: {mode}")
        producer = Producer(confluent_config(kafka, **{"enable.idempotence": True}))
        for doc_id, title, text in SAMPLE:
            producer.produce(
                topics.raw, key=doc_id, value=json.dumps({"id": doc_id, "title": title, "text": text})
            )
        if producer.flush(30) != 0:
            raise typer.Exit(1)
        del producer
        consumer = Consumer(
            confluent_config(
                kafka,
                **{"group.id": "mbc-demo", "auto.offset.reset": "earliest", "enable.auto.commit": False},
            )
        )
        consumer.subscribe([topics.raw])
        seen: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while len(seen) < len(SAMPLE) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            doc = json.loads(msg.value() or b"{}")
            seen[doc["id"]] = doc["title"]
        consumer.commit(asynchronous=False)
        consumer.close()
    typer.echo(f"published {len(SAMPLE)} documents, read back {len(seen)}:")
    for doc_id, title in sorted(seen.items()):
        typer.echo(f"  {doc_id}  {title}")
    if len(seen) != len(SAMPLE):
        typer.secho("some documents did not come back", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
