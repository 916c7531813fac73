"""Signal handling for the worker, importable in milliseconds (standard library only)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from infra.logging import get_logger

log = get_logger(__name__)


class ShutdownRequest:
    """SIGINT/SIGTERM handling installed first thing, so a signal during start-up (loading the
    model takes seconds) also ends in a clean exit 0 instead of the default abrupt death."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._callbacks: list[Any] = []
        self._previous: dict[int, Any] = {}

    @classmethod
    def install(cls) -> ShutdownRequest:
        req = cls()
        req._previous = {s: signal.signal(s, req._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return req

    def _handle(self, signum: int, _frame: object) -> None:
        log.info("shutting down", signal=signal.Signals(signum).name)
        self.event.set()
        for cb in self._callbacks:
            cb()

    def on_request(self, callback: Any) -> None:
        self._callbacks.append(callback)
        if self.event.is_set():
            callback()

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
