"""Prometheus metrics of the stage, on their own registry and HTTP endpoint.

Counters move only for first decisions (not for replays after a restart), so the sum of a counter
over all of a stage's process lifetimes equals the ledger's count.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, start_http_server

from pipeline.events import Reason
from pipeline.stage.logic import Outcome, Step


class StageMetrics:
    """accepted / duplicate / rejected{reason} / replayed counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "mbc_pipeline_accepted", "Documents accepted and sent to the clean topic.", registry=self.registry
        )
        self.duplicate = Counter(
            "mbc_pipeline_duplicate",
            "Documents dropped because the same text from the same source was accepted within the window.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "mbc_pipeline_rejected",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.replayed = Counter(
            "mbc_pipeline_replayed",
            "Messages seen again after a restart: outputs re-sent, not counted again.",
            registry=self.registry,
        )
        self.skipped = Counter(
            "mbc_pipeline_skipped",
            "Raw messages the broker had deleted before the stage reached them (retention).",
            registry=self.registry,
        )
        for reason in Reason:
            self.rejected.labels(reason=reason.value)

    def record(self, step: Step) -> None:
        self.skipped.inc(step.skipped)
        if step.replay:
            self.replayed.inc()
        elif step.outcome is Outcome.ACCEPTED:
            self.accepted.inc()
        elif step.outcome is Outcome.DUPLICATE:
            self.duplicate.inc()
        elif step.rejection is not None:
            self.rejected.labels(reason=step.rejection.reason.value).inc()

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint in a thread; returns the port it listens on."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
