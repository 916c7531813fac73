"""Helpers for the pipeline tests: per-test topics, the `mbc` CLI in child processes, a running
faust stage, and background readers that keep what a topic receives.

The embedded broker keeps only the last 5 MiB of every partition (NOTES.md), so tests read output
topics *while* they are written instead of afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from pipeline.stage.faust_config import TABLE_NAME
from pipeline.topic_reader import Record, record_from_message
from tests.mbc_process import MBC, run_mbc

FIXTURES = Path(__file__).parent / "fixtures"
CLI = MBC


def precreate(bootstrap: str, names: list[str]) -> None:
    """Make the embedded broker auto-create topics now (its CreateTopics never answers)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for name in names:
        producer.list_topics(name, timeout=15)
    producer.flush(0)
    del producer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Topics:
    raw: str
    clean: str
    dlq: str

    def env(self) -> dict[str, str]:
        return {"MBC_TOPICS__RAW": self.raw, "MBC_TOPICS__CLEAN": self.clean, "MBC_TOPICS__DLQ": self.dlq}


@pytest.fixture
def topics(request: pytest.FixtureRequest, broker: str) -> Topics:
    """Fresh raw/clean/dlq topic names for this test, already created on the broker."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40] + "-" + uuid.uuid4().hex[:6]
    t = Topics(f"{stem}.raw", f"{stem}.clean", f"{stem}.dlq")
    precreate(broker, [t.raw, t.clean, t.dlq])
    return t


def cli_env(broker: str, topics: Topics, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBC_")}
    env.update(topics.env())
    env.update(
        {"MBC_KAFKA__BOOTSTRAP_SERVERS": broker, "MBC_LOG_JSON": "true", "MBC_LOG_LEVEL": "INFO", **extra}
    )
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_mbc(*args, env=env, timeout=timeout)


class StageProcess:
    """`mbc pipeline run` in a child process with short consumer timeouts and a metrics port."""

    def __init__(self, broker: str, topics: Topics, workdir: Path, app_id: str, **env: str) -> None:
        self.app_id = app_id
        self.port = free_port()
        self.workdir = workdir
        self.env = cli_env(
            broker,
            topics,
            MBC_SESSION_TIMEOUT_S="6",
            MBC_REBALANCE_TIMEOUT_S="10",
            MBC_HEARTBEAT_INTERVAL_S="0.5",
            **env,
        )
        precreate(broker, [f"{app_id}-{TABLE_NAME}-changelog"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"stage-{self.app_id}-{self.runs}.log"

    def start(self, timeout: float = 90) -> StageProcess:
        self.runs += 1
        args = ["pipeline", "run", "--app-id", self.app_id, "--metrics-port", str(self.port)]
        args += ["--state-dir", str(self.workdir / f"stage-{self.app_id}")]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([*CLI, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"stage exited with {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"stage metrics endpoint did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        """Counter values by ``name`` or ``name{label=value}``."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                    out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
        return out

    def decided(self) -> int:
        m = self.metrics()
        rejected = sum(v for k, v in m.items() if k.startswith("mbc_pipeline_rejected_total"))
        return int(m["mbc_pipeline_accepted_total"] + m["mbc_pipeline_duplicate_total"] + rejected)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def stage_factory(broker: str, tmp_path: Path) -> Iterator[Callable[..., StageProcess]]:
    """Creates stage processes for this test and kills any still running afterwards."""
    made: list[StageProcess] = []

    def make(topics: Topics, **env: str) -> StageProcess:
        stage = StageProcess(broker, topics, tmp_path, f"stage-{uuid.uuid4().hex[:8]}", **env)
        made.append(stage)
        return stage

    yield make
    for stage in made:
        stage.close()


class Collector:
    """Reads topics from the beginning in a background thread and keeps every record."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.records: list[Record] = []
        self.next_source_offset = 0  # one past the highest raw offset named by an output's provenance
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"collector-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.message.max.bytes": 16 * 1024 * 1024,
            }
        )
        md = self._consumer.list_topics(timeout=15)
        self._consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in md.topics[t].partitions]
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.2):
                if msg.error() is None:
                    rec = record_from_message(msg)
                    offset = int(rec.header("mbc-source-offset") or -1)
                    with self._lock:
                        self.records.append(rec)
                        self.next_source_offset = max(self.next_source_offset, offset + 1)

    def of(self, topic: str) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.topic == topic]

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float, what: str = "", stage: StageProcess | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        counts = {t: sum(r.topic == t for r in self.records) for t in {r.topic for r in self.records}}
        log = f"\nstage log:\n{stage.log()}" if stage is not None else ""
        raise AssertionError(f"timed out waiting for {what or predicate}; got {counts}{log}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


@pytest.fixture
def collect(broker: str) -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(*topic_names: str) -> Collector:
        c = Collector(broker, *topic_names)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
