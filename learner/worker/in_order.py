"""A one-lane gate that lets numbered batches through in submission order.

The pipelined worker (:mod:`learner.worker.pipeline`) runs each batch as one task in a thread pool;
each task passes three gates — tokenize, encode, write — one after the other. A gate admits
batch ``n`` only after batch ``n - 1`` has left it, so every stage works on one batch at a time
and in order, while the three stages work on three different batches at once.

A batch that fails (or is abandoned) inside a gate *breaks* it: every later batch is refused with
:class:`GateBroken` instead of entering. For the write gate this is the exactness rule — batch
``n + 1``'s store transaction carries offsets past batch ``n``, so it must never be written when
batch ``n`` was not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class GateBroken(Exception):
    """An earlier batch failed or was abandoned in this gate; later ones may not pass."""


class InOrder:
    """Admit tickets 0, 1, 2, … one at a time, in order (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._next = 0
        self._broken: str | None = None
        self._cond = threading.Condition()

    @property
    def broken(self) -> str | None:
        return self._broken

    def break_(self, why: str) -> None:
        """Refuse every ticket not yet admitted (shutdown, or an earlier failure)."""
        with self._cond:
            if self._broken is None:
                self._broken = why
            self._cond.notify_all()

    @contextmanager
    def turn(self, ticket: int, stop: Callable[[], str | None] = lambda: None) -> Iterator[None]:
        """Wait for ``ticket``'s turn (or for ``stop()`` to give a reason), hold the lane, pass it on.

        Leaving with an exception breaks the gate (later tickets get :class:`GateBroken`)."""
        with self._cond:
            while self._next != ticket and self._broken is None:
                why = stop()
                if why is not None:
                    self._broken = self._broken or why
                    self._cond.notify_all()
                    break
                self._cond.wait(0.05)
            if self._broken is not None:
                raise GateBroken(f"{self.name}: {self._broken}")
        try:
            yield
        except BaseException as e:
            self.break_(f"batch {ticket} failed: {type(e).__name__}")
            raise
        finally:
            with self._cond:
                if self._next == ticket:
                    self._next = ticket + 1
                self._cond.notify_all()


def wait_until(deadline: float, stop: Callable[[], str | None]) -> str | None:
    """Sleep until ``deadline`` (monotonic) in short steps; the reason if ``stop()`` gives one first."""
    while True:
        why = stop()
        if why is not None:
            return why
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(0.05, left))
