"""Raw events published byte for byte: what a misbehaving producer would send."""

from __future__ import annotations

from typing import Any

from mbc.demo.errors import DemoError


def publish_raw(kafka: Any, topic: str, lines: list[bytes]) -> int:
    """Publish ``lines`` byte for byte (no key): what a misbehaving producer would send."""
    from confluent_kafka import Producer

    from infra.kafka import confluent_config

    producer = Producer(confluent_config(kafka, **{"enable.idempotence": True}))
    failed: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    for line in lines:
        producer.produce(topic, value=line, on_delivery=report)
    left = producer.flush(30)
    if left or failed:
        raise DemoError(f"could not publish the malformed events: {failed[:1] or [f'{left} undelivered']}")
    return len(lines)
