"""Fixtures for the learner worker: a tiny checkpoint with random weights (the worker's
mechanics do not depend on training) and helpers to run ``mbc learn`` as a real OS process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from pipeline.events import make_document
from tests.mbc_process import MBC

REPO = Path(__file__).resolve().parents[2]


def tiny_k() -> int:
    """K (context vectors per document) of the tiny preset the worker tests run."""
    from learner.model.presets import get_preset

    return int(get_preset("tiny").model.num_vectors)


WORDS = [
    "market",
    "shares",
    "rose",
    "after",
    "the",
    "central",
    "bank",
    "held",
    "rates",
    "while",
    "oil",
    "prices",
    "fell",
    "and",
    "the",
    "company",
    "reported",
    "quarterly",
    "earnings",
    "above",
    "forecasts",
    "as",
    "exports",
    "grew",
    "in",
    "the",
    "region",
    "despite",
    "a",
    "strike",
    "at",
    "the",
    "port",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `tiny`-preset checkpoint built from config with random weights and a tokenizer trained here."""
    import torch

    from learner.checkpoint import CheckpointMeta, save_checkpoint
    from learner.model.build import arch_configs, build_model
    from learner.model.presets import get_preset
    from learner.text.tokenizers import Tokenizers, train_tokenizer

    torch.manual_seed(0)
    preset = get_preset("tiny")
    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(40)) for i in range(200)]
    tok = train_tokenizer(texts, vocab_size=300)
    toks = Tokenizers(tok, tok, shared=True)
    model = build_model(preset.model, "scratch", toks)
    meta = CheckpointMeta(preset.model, preset.train, "scratch", "compressed", arch_configs(model), None, 0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(path, model, toks, meta)
    return path


def documents(n: int, start: int = 0, source: str = "test-wire") -> list[tuple[bytes, bytes]]:
    """(key, value) of ``n`` valid clean-document events with distinct ids and texts."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(start, start + n):
        text = " ".join(WORDS[(i * 13 + j * 5) % len(WORDS)] for j in range(30)) + f" item {i}."
        doc = make_document(
            source=source,
            ref=f"item-{i}",
            text=text,
            title=f"item {i}",
            published_at=t0 + timedelta(minutes=i),
        )
        out.append((doc.key, doc.to_json()))
    return out


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value in messages:
        p.produce(topic, key=key, value=value)
        p.poll(0)
    assert p.flush(30) == 0


class WorkerProcess:
    """`mbc learn` in a child process, with its own environment."""

    def __init__(self, checkpoint: Path, env: dict[str, str], log: Path, *extra: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [*MBC, "learn", "--checkpoint", str(checkpoint), *extra],
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None


def worker_env(bootstrap: str, db_url: str, group: str, topics_prefix: str) -> dict[str, str]:
    return {
        "MBC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "MBC_DATABASE__URL": db_url,
        "MBC_GROUP_ID": group,
        "MBC_TOPICS__CLEAN": f"{topics_prefix}.clean",
        "MBC_TOPICS__DLQ": f"{topics_prefix}.dlq",
        "MBC_DEVICE": "cpu",
        "MBC_LOG_JSON": "true",
        "MBC_BATCH_MAX_WAIT_S": "0.5",
        "OMP_NUM_THREADS": "1",
        # The crash-safety tests run the pipelined worker (three batches in flight); the serial
        # one (depth 1) is covered step by step in test_store_step.py and test_pipeline.py.
        "MBC_PIPELINE_DEPTH": "3",
    }


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def log_events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


@pytest.fixture
def worker_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "worker.log"
    path.touch()
    yield path
