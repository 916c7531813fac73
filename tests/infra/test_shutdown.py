"""The one shutdown helper: a signal sets it once, runs callbacks once, and handlers are restored."""

from __future__ import annotations

import os
import signal

from infra.shutdown import ShutdownRequest


def test_signal_sets_request_runs_callbacks_once_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    calls: list[str] = []
    with ShutdownRequest().installed() as stop:
        stop.on_request(lambda: calls.append("cb"))
        assert not stop.is_set() and stop.signal is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5.0)
        os.kill(os.getpid(), signal.SIGINT)  # a second signal: still one callback
        assert stop.signal == signal.SIGINT
        assert calls == ["cb"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_callback_registered_after_the_request_runs_at_once() -> None:
    req = ShutdownRequest()
    req.set()
    calls: list[int] = []
    req.on_request(lambda: calls.append(1))
    assert calls == [1] and req.wait(0) is True
