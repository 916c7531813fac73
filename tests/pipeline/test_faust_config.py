"""The faust stage reaches Kafka with the same settings as the confluent clients: bootstrap
servers, security protocol, SASL and SSL are translated for aiokafka."""

from __future__ import annotations

from pathlib import Path

import certifi
import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, credentials_to_aiokafka_auth
from pydantic import SecretStr

from infra.errors import ConfigError
from infra.settings import KafkaSettings, TopicSettings
from pipeline.settings import PipelineSettings
from pipeline.stage.faust_config import (
    app_config,
    changelog_topic,
    complete_buffer_flush,
    credentials,
    limit_fetch_wait,
)


def auth(**kafka: object) -> dict[str, object]:
    return dict(credentials_to_aiokafka_auth(credentials(KafkaSettings(bootstrap_servers="k:9092", **kafka))))  # type: ignore[arg-type]


def test_plaintext_and_broker_list() -> None:
    settings = PipelineSettings(
        kafka=KafkaSettings(bootstrap_servers="kafka-1:9092, kafka-2:9093"),
        topics=TopicSettings(partitions=12, replication_factor=3),
        app_id="stage-x",
        state_dir=Path("/var/lib/mbc"),
    )
    conf = app_config(settings)
    assert conf["broker"] == ["aiokafka://kafka-1:9092", "aiokafka://kafka-2:9093"]
    assert conf["broker_credentials"] is None
    assert (conf["topic_partitions"], conf["topic_replication_factor"]) == (12, 3)
    assert (conf["topic_allow_declare"], conf["topic_disable_leader"]) == (False, True)
    assert conf["datadir"] == "/var/lib/mbc/faust"
    assert changelog_topic(settings) == "stage-x-stage-state-changelog"


def test_sasl_ssl_scram_with_a_ca_file() -> None:
    a = auth(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="mbc",
        sasl_password=SecretStr("s3cret"),
        ssl_ca_location=Path(certifi.where()),
    )
    assert (a["security_protocol"], a["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (a["sasl_plain_username"], a["sasl_plain_password"]) == ("mbc", "s3cret")
    assert a["ssl_context"] is not None


def test_sasl_plaintext_and_ssl_only() -> None:
    a = auth(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=SecretStr("p"))
    assert (a["security_protocol"], a["sasl_mechanism"], a["ssl_context"]) == (
        "SASL_PLAINTEXT",
        "PLAIN",
        None,
    )
    s = auth(security_protocol="SSL", ssl_ca_location=Path(certifi.where()))
    assert s["security_protocol"] == "SSL" and s["ssl_context"] is not None


def test_oauthbearer_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="OAUTHBEARER is not supported"):
        credentials(
            KafkaSettings(
                bootstrap_servers="k:9092", security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER"
            )
        )


def test_no_bootstrap_servers_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no Kafka bootstrap servers"):
        app_config(PipelineSettings(kafka=KafkaSettings(bootstrap_servers="")))


def test_fetch_wait_patch_wraps_faust_once() -> None:
    original = getattr(
        AIOKafkaConsumerThread, "_mbc_create_worker_consumer", AIOKafkaConsumerThread._create_worker_consumer
    )
    limit_fetch_wait(50)
    limit_fetch_wait(80)
    assert AIOKafkaConsumerThread._mbc_create_worker_consumer is original  # type: ignore[attr-defined]
    assert AIOKafkaConsumerThread._create_worker_consumer is not original


def test_buffer_flush_waits_for_slow_sends() -> None:
    """faust's own flush gives up after 0.1 s without a sent message; ours drains the buffer."""
    import asyncio
    from types import SimpleNamespace

    import faust
    from faust.transport.producer import ProducerBuffer

    complete_buffer_flush()
    sent: list[int] = []

    class SlowChannel:
        async def publish_message(self, fut: SimpleNamespace, wait: bool = False) -> None:
            await asyncio.sleep(0.15)
            sent.append(fut.n)

    async def scenario() -> None:
        buffer = ProducerBuffer()
        buffer.app = faust.App("flush-test")
        await buffer.start()
        for n in range(3):
            buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=SlowChannel())))  # type: ignore[arg-type]
        await buffer.flush()
        assert sent == [0, 1, 2]
        await buffer.stop()

    asyncio.run(scenario())
