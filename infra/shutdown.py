"""The one SIGINT/SIGTERM helper of every long-running command (standard library only, so it
can be installed before slow imports).

:class:`ShutdownRequest` records the first signal and wakes whoever waits on it; callbacks run on
the signal (e.g. arroyo's ``signal_shutdown``). Use it as ``with ShutdownRequest().installed() as
stop:`` (previous handlers restored on exit) or ``ShutdownRequest.install()`` … ``restore()`` when
the handlers must be in place before the rest of the process starts (loading a model takes
seconds: a signal then still ends in a clean exit 0 instead of the default abrupt death).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from infra.logging import get_logger

log = get_logger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownRequest:
    """Set by SIGINT/SIGTERM while installed; long loops check :meth:`is_set` or :meth:`wait`."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None  # the signal that asked, if one did
        self._callbacks: list[Callable[[], Any]] = []
        self._previous: dict[int, Any] = {}

    @classmethod
    def install(cls) -> ShutdownRequest:
        """A new request with its handlers installed now (call :meth:`restore` when done)."""
        req = cls()
        req._install()
        return req

    @contextmanager
    def installed(self) -> Iterator[ShutdownRequest]:
        """Handlers installed for the block, the previous ones restored after it."""
        self._install()
        try:
            yield self
        finally:
            self.restore()

    def _install(self) -> None:
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        log.info("shutting down", signal=signal.Signals(signum).name)
        self.set(signum)

    def set(self, signum: int | None = None) -> None:
        """Ask for shutdown (what a signal does); runs the callbacks once."""
        first = not self.event.is_set()
        self.signal = signum if signum is not None else self.signal
        self.event.set()
        if first:
            for cb in self._callbacks:
                cb()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds or until shutdown is asked; True if it was."""
        return self.event.wait(timeout)

    def on_request(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` when shutdown is asked (at once if it already was)."""
        self._callbacks.append(callback)
        if self.event.is_set():
            callback()

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}
