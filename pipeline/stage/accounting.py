"""The stage's books, read back from Kafka: per raw partition, what was decided (the ledgers in
the table's changelog) against what is in the raw topic. Backs `mbc pipeline stats`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.settings import PipelineSettings
from pipeline.stage.faust_config import changelog_topic
from pipeline.stage.logic import LEDGER_PREFIX, Ledger
from pipeline.topic_reader import read, watermarks


@dataclass
class Accounting:
    """Ledgers by raw partition and the raw topic's (low, high) offsets.

    The books balance when ``raw = accepted + duplicate + rejected + skipped + pending``.
    """

    ledgers: dict[int, Ledger]
    raw: dict[int, tuple[int, int]]

    @property
    def decided(self) -> int:
        return sum(ledger.total for ledger in self.ledgers.values())

    @property
    def accepted(self) -> int:
        return sum(ledger.accepted for ledger in self.ledgers.values())

    @property
    def duplicate(self) -> int:
        return sum(ledger.duplicate for ledger in self.ledgers.values())

    @property
    def rejected(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ledger in self.ledgers.values():
            for reason, n in ledger.rejected.items():
                out[reason] = out.get(reason, 0) + n
        return dict(sorted(out.items()))

    @property
    def skipped(self) -> int:
        return sum(ledger.skipped for ledger in self.ledgers.values())

    @property
    def raw_messages(self) -> int:
        """Messages ever written to the raw topic (offsets start at 0; no transactions, no compaction)."""
        return sum(high for _, high in self.raw.values())

    @property
    def retained(self) -> int:
        """Raw messages the broker still holds."""
        return sum(high - low for low, high in self.raw.values())

    def pending(self, partition: int) -> int:
        """Raw messages of ``partition`` not decided yet."""
        high = self.raw.get(partition, (0, 0))[1]
        return max(0, high - self.ledgers.get(partition, Ledger()).next_offset)

    def summary(self) -> dict[str, Any]:
        return {
            "raw": self.raw_messages,
            "retained": self.retained,
            "decided": self.decided,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "pending": sum(self.pending(p) for p in self.raw),
        }


def _decode_key(key: bytes | None) -> str:
    text = (key or b"").decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, str) else text


def read_ledgers(settings: PipelineSettings, timeout: float = 60.0) -> dict[int, Ledger]:
    """The latest ledger of every raw partition, from the changelog topic."""
    ledgers: dict[int, Ledger] = {}
    topic = changelog_topic(settings)
    if topic not in _existing(settings, topic):
        return ledgers
    for rec in read(settings.kafka, topic, timeout=timeout):
        key = _decode_key(rec.key)
        if key.startswith(LEDGER_PREFIX):
            ledgers[int(key.removeprefix(LEDGER_PREFIX))] = Ledger.from_json(
                json.loads(rec.value) if rec.value else None
            )
    return ledgers


def _existing(settings: PipelineSettings, topic: str) -> set[str]:
    from infra.kafka import cluster_metadata

    return set(cluster_metadata(settings.kafka).topics)  # BrokerError in one line if unreachable


def read_accounting(settings: PipelineSettings, timeout: float = 60.0) -> Accounting:
    return Accounting(read_ledgers(settings, timeout), watermarks(settings.kafka, settings.topics.raw))
