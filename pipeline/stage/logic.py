"""What the stage decides for each raw message, and the exact accounting — no faust in here.

State lives in one key-value table (a faust Table in production, a dict in tests) whose changes
faust writes to the changelog partition of the raw message being processed. Two kinds of keys:

- ``ledger:<p>``: per raw partition, the next offset to decide and the counts so far
  (accepted, duplicate, rejected by reason, and skipped: offsets the broker had already deleted
  when the stage reached them);
- ``h:<p>:<source hash>:<content sha256>``: the last accepted copy of a text from a source:
  its offsets (last four), record timestamp and document id.

Why the accounting is exact under at-least-once delivery: for raw partition ``p`` every state
change goes, in processing order, to changelog partition ``p``; each message's ledger write comes
after its dedup write; faust flushes the producer before it commits offsets. So after any crash
the restored state is a prefix of the processing history that covers at least every committed
offset. A message below ``ledger.next_offset`` was already counted: it is a *replay* — its outputs
are sent again (downstream is idempotent by id and provenance headers) but it is not counted
again and changes no state. Every other message is decided and counted exactly once.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from infra.logging import get_logger
from pipeline.events import Document, Limits, Reason, Rejection, validate

log = get_logger(__name__)

LEDGER_PREFIX = "ledger:"
DEDUP_PREFIX = "h:"
KEEP_OFFSETS = 4


class State(Protocol):
    """The subset of a mapping the logic needs (a faust Table or a dict)."""

    def get(self, key: str, /) -> Any: ...
    def __setitem__(self, key: str, value: Any) -> None: ...
    def __delitem__(self, key: str) -> None: ...
    def keys(self) -> Iterable[str]: ...


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass
class Ledger:
    """Per raw partition: the next offset to decide and what was decided before it."""

    next_offset: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # offsets the broker no longer had when the stage got there (retention)

    @property
    def total(self) -> int:
        """Messages decided (accepted, duplicate or rejected); ``next_offset = total + skipped``."""
        return self.accepted + self.duplicate + sum(self.rejected.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "next": self.next_offset,
            "acc": self.accepted,
            "dup": self.duplicate,
            "rej": dict(self.rejected),
            "skip": self.skipped,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Ledger:
        if not data:
            return cls()
        return cls(
            int(data["next"]), int(data["acc"]), int(data["dup"]), dict(data["rej"]), int(data.get("skip", 0))
        )


@dataclass(frozen=True, slots=True)
class Step:
    """The decision for one message. ``replay``: decided before a restart; outputs only."""

    outcome: Outcome
    replay: bool
    document: Document | None = None
    rejection: Rejection | None = None
    duplicate_of: str | None = None
    skipped: int = 0  # raw offsets found missing just before this one


def ledger_key(partition: int) -> str:
    return f"{LEDGER_PREFIX}{partition}"


def dedup_key(partition: int, doc: Document) -> str:
    source = hashlib.sha256(doc.source.encode()).hexdigest()[:16]
    return f"{DEDUP_PREFIX}{partition}:{source}:{doc.content_sha256}"


class StageLogic:
    """Validate, deduplicate within ``window_ms`` of record time, and count, one message at a time."""

    def __init__(self, state: State, limits: Limits, window_ms: int, sweep_every: int = 10_000) -> None:
        self.state = state
        self.limits = limits
        self.window_ms = window_ms
        self.sweep_every = sweep_every
        self._since_sweep: dict[int, int] = {}

    def ledger(self, partition: int) -> Ledger:
        return Ledger.from_json(self.state.get(ledger_key(partition)))

    def process(
        self, partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None
    ) -> Step:
        ledger = self.ledger(partition)
        replay = offset < ledger.next_offset
        checked = self._validate(key, value, timestamp_ms)
        if isinstance(checked, Rejection):
            step = Step(Outcome.REJECTED, replay, rejection=checked)
        elif replay:
            step = self._redecide(partition, offset, checked)
        else:
            step = self._decide(partition, offset, timestamp_ms, checked)
        if not replay:
            step = self._count(partition, offset, ledger, step)
            self._maybe_sweep(partition, timestamp_ms)
        return step

    def _validate(self, key: bytes | None, value: bytes | None, timestamp_ms: int) -> Document | Rejection:
        now = datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms > 0 else datetime.now(UTC)
        try:
            return validate(value, key=key, now=now, limits=self.limits)
        except Exception as e:  # a bug must dead-letter the message, never stop or skip the stream
            return Rejection(Reason.INTERNAL_ERROR, f"{type(e).__name__}: {e}"[:500])

    def _decide(self, partition: int, offset: int, timestamp_ms: int, doc: Document) -> Step:
        k = dedup_key(partition, doc)
        entry = self.state.get(k)
        if entry is not None and offset in entry["o"]:
            # Decided before a crash whose ledger write was lost: it was the accepted copy.
            return Step(Outcome.ACCEPTED, False, document=doc)
        if entry is not None and timestamp_ms - int(entry["t"]) <= self.window_ms:
            return Step(Outcome.DUPLICATE, False, document=doc, duplicate_of=str(entry["id"]))
        offsets = [*entry["o"][-(KEEP_OFFSETS - 1) :], offset] if entry is not None else [offset]
        self.state[k] = {"o": offsets, "t": timestamp_ms, "id": doc.id}
        return Step(Outcome.ACCEPTED, False, document=doc)

    def _redecide(self, partition: int, offset: int, doc: Document) -> Step:
        entry = self.state.get(dedup_key(partition, doc))
        accepted = entry["o"] if entry is not None else []
        if offset not in accepted and accepted and min(accepted) < offset:
            # An earlier copy is on record and this one is not: it was the duplicate.
            return Step(Outcome.DUPLICATE, True, document=doc, duplicate_of=str(entry["id"]))
        # Accepted the first time, or the record of that time has expired: send it again.
        return Step(Outcome.ACCEPTED, True, document=doc)

    def _count(self, partition: int, offset: int, ledger: Ledger, step: Step) -> Step:
        if offset > ledger.next_offset:
            step = replace(step, skipped=offset - ledger.next_offset)
            # Messages between the last decided offset and this one are gone from the broker
            # (retention, or the mock broker's 5 MiB per partition): count them, never hide them.
            ledger.skipped += offset - ledger.next_offset
            log.error(
                "raw messages vanished before the stage saw them",
                partition=partition,
                first=ledger.next_offset,
                count=offset - ledger.next_offset,
            )
        if step.outcome is Outcome.ACCEPTED:
            ledger.accepted += 1
        elif step.outcome is Outcome.DUPLICATE:
            ledger.duplicate += 1
        else:
            assert step.rejection is not None
            reason = step.rejection.reason.value
            ledger.rejected[reason] = ledger.rejected.get(reason, 0) + 1
        ledger.next_offset = offset + 1
        self.state[ledger_key(partition)] = ledger.to_json()
        return step

    def _maybe_sweep(self, partition: int, timestamp_ms: int) -> None:
        """Every ``sweep_every`` messages of a partition, forget its entries older than the window."""
        n = self._since_sweep.get(partition, 0) + 1
        self._since_sweep[partition] = n
        if n < self.sweep_every:
            return
        self._since_sweep[partition] = 0
        prefix = f"{DEDUP_PREFIX}{partition}:"
        horizon = timestamp_ms - self.window_ms
        expired = []
        for k in list(self.state.keys()):
            if k.startswith(prefix):
                entry = self.state.get(k)
                if entry is not None and int(entry["t"]) < horizon:
                    expired.append(k)
        for k in expired:
            del self.state[k]
