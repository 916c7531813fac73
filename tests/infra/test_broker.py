"""The embedded broker really is a Kafka broker: other OS processes produce and consume through
it with a consumer group, and committed offsets survive a consumer restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from infra.kafka import ensure_topics
from infra.settings import KafkaSettings, TopicSettings
from tests.mbc_process import MBC

CLIENT = r"""
import json, sys, time
from confluent_kafka import Consumer, Producer
role, servers, topic = sys.argv[1], sys.argv[2], sys.argv[3]
if role == "produce":
    start, count = int(sys.argv[4]), int(sys.argv[5])
    p = Producer({"bootstrap.servers": servers, "enable.idempotence": True})
    for i in range(start, start + count):
        p.produce(topic, key=str(i).encode(), value=json.dumps({"n": i}).encode())
    assert p.flush(30) == 0
    print(json.dumps({"produced": count}))
else:
    want, group = int(sys.argv[4]), sys.argv[5]
    c = Consumer({"bootstrap.servers": servers, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([topic])
    got, deadline = [], time.time() + 60
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        got.append(json.loads(m.value())["n"])
    c.commit(asynchronous=False)
    c.close()
    print(json.dumps({"consumed": got}))
"""


def run_client(tmp_path: Path, *args: str) -> dict[str, list[int] | int]:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_two_processes_with_group_and_offsets_surviving_restart(broker: str, tmp_path: Path) -> None:
    topic = "t-broker-" + str(os.getpid())
    assert run_client(tmp_path, "produce", broker, topic, "0", "50") == {"produced": 50}
    first = run_client(tmp_path, "consume", broker, topic, "50", "g1")["consumed"]
    assert isinstance(first, list)
    assert sorted(first) == list(range(50))
    # A restarted consumer of the same group resumes after the committed offsets: it sees only new data.
    assert run_client(tmp_path, "produce", broker, topic, "50", "10") == {"produced": 10}
    second = run_client(tmp_path, "consume", broker, topic, "10", "g1")["consumed"]
    assert isinstance(second, list)
    assert sorted(second) == list(range(50, 60))
    # A different group starts from the beginning.
    other = run_client(tmp_path, "consume", broker, topic, "60", "g2")["consumed"]
    assert isinstance(other, list)
    assert sorted(other) == list(range(60))


def test_ensure_topics_falls_back_to_auto_creation_on_mock(broker: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker)
    assert ensure_topics(kafka, TopicSettings(), ["fresh.topic.a"]) == "auto"


def test_mbc_broker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    addr_file = tmp_path / "bootstrap"
    proc = subprocess.Popen(
        [*MBC, "broker", "--bootstrap-file", str(addr_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while not addr_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert addr_file.exists(), proc.stderr.read() if proc.stderr else ""
    address = addr_file.read_text().strip()
    host, port = address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert proc.stdout is not None and proc.stdout.read().strip() == address
    assert not addr_file.exists()
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(proc.pid).status()
