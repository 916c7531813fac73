"""The embedded Kafka-protocol broker: librdkafka's mock cluster, served over TCP.

The mock cluster ships inside the confluent-kafka wheel. A client created with
``test.mock.num.brokers`` starts it on 127.0.0.1 (random port) in background threads of this
process; any Kafka client (confluent-kafka, aiokafka/faust, other processes) can then connect to
the printed address. It has consumer groups, committed offsets and idempotent producers, but no
CreateTopics (topics auto-create with 4 partitions) and no real transactions (docs/DESIGN.md §4).

Three ways to use it:
- ``with EmbeddedBroker() as b: b.bootstrap_servers`` — in this process;
- ``with BrokerProcess() as b: ...`` — in a child process (what tests and ``mbc demo`` use);
- ``mbc broker --bootstrap-file F`` — from a shell, until SIGINT/SIGTERM.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException, Producer

from infra.errors import BrokerError
from infra.kafka import librdkafka_logger
from infra.shutdown import ShutdownRequest


class EmbeddedBroker:
    """A mock Kafka cluster living in this process for as long as the object is open."""

    def __init__(self, num_brokers: int = 1) -> None:
        self.num_brokers = num_brokers
        self._holder: Producer | None = None
        self.bootstrap_servers = ""

    def start(self) -> str:
        self._holder = Producer(
            {
                "test.mock.num.brokers": self.num_brokers,
                "client.id": "mbc-embedded-broker",
                "logger": librdkafka_logger(),
                "log_level": 4,  # librdkafka announces the mock cluster at NOTICE (5); keep it quiet
            }
        )
        try:
            md = self._holder.list_topics(timeout=10)
        except KafkaException as e:
            raise BrokerError(f"the embedded broker did not start: {e}") from e
        self.bootstrap_servers = ",".join(f"{b.host}:{b.port}" for b in sorted(md.brokers.values(), key=str))
        return self.bootstrap_servers

    def stop(self) -> None:
        if self._holder is not None:
            self._holder.flush(1)
            self._holder = None  # dropping the last reference destroys the mock cluster

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(bootstrap_file: Path | None, num_brokers: int = 1, announce: bool = True) -> int:
    """Run a broker until SIGINT/SIGTERM; write its address to ``bootstrap_file`` if given."""
    with ShutdownRequest().installed() as stop, EmbeddedBroker(num_brokers) as broker:
        if bootstrap_file is not None:
            try:
                _atomic_write(bootstrap_file, broker.bootstrap_servers + "\n")
            except OSError as e:
                raise BrokerError(f"--bootstrap-file {bootstrap_file}: cannot write it ({e.strerror})") from e
        if announce:
            print(broker.bootstrap_servers, flush=True)
        while not stop.wait(0.5):
            pass
    if bootstrap_file is not None:
        try:
            bootstrap_file.unlink()
        except FileNotFoundError:
            pass
    return 0


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class BrokerProcess:
    """An embedded broker in a child process; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, num_brokers: int = 1, startup_timeout: float = 30.0) -> None:
        self.num_brokers = num_brokers
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.bootstrap_servers = ""
        self._dir = tempfile.TemporaryDirectory(prefix="mbc-broker-")

    def start(self) -> str:
        addr_file = Path(self._dir.name) / "bootstrap"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.broker",
                "--bootstrap-file",
                str(addr_file),
                "--num-brokers",
                str(self.num_brokers),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if addr_file.exists():
                self.bootstrap_servers = addr_file.read_text().strip()
                return self.bootstrap_servers
            if self.proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self.proc.returncode} before starting")
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"embedded broker did not start within {self.startup_timeout:.0f} s")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        self._dir.cleanup()
        return code

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":  # python -m infra.broker: used by BrokerProcess
    import argparse

    from infra.logging import configure_logging

    parser = argparse.ArgumentParser(description="embedded Kafka broker (librdkafka mock cluster)")
    parser.add_argument("--bootstrap-file", type=Path)
    parser.add_argument("--num-brokers", type=int, default=1)
    args = parser.parse_args()
    configure_logging("broker", "WARNING")
    sys.exit(serve(args.bootstrap_file, args.num_brokers, announce=False))
