"""The demo's child processes: each ``mbc`` service started as a user would, logged to a file,
checked while it runs and stopped at the end (SIGTERM, then SIGKILL).

A child gets SIGTERM if the demo dies without cleaning up (Linux ``PR_SET_PDEATHSIG``), and Ctrl-C
between the fork and the bookkeeping cannot leave a child that nobody stops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbc.demo.errors import DemoError

CLI = [sys.executable, "-c", "from mbc.cli import main; main()"]


def tail(path: Path, lines: int = 12) -> str:
    """The end of a log, indented, to quote in an error (the work folder may be removed after)."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line[:300] for line in text)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Children:
    """Every process the demo starts; :meth:`stop_all` ends them (SIGTERM, then SIGKILL)."""

    log_dir: Path
    cwd: Path
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        log = self.log_dir / f"{name}.log"
        # Ctrl-C between the fork and the bookkeeping below would leave a child nobody stops: the
        # signals wait until it is recorded (the child unblocks them before it execs).
        with _signals_blocked(), log.open("ab") as out:
            proc = subprocess.Popen(
                [*CLI, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={**os.environ, **(env or {})},
                preexec_fn=_child_setup,
            )
            child = Child(name, proc, log)
            self.started.append(child)
        return child

    def check(self, child: Child) -> None:
        """A DemoError if ``child`` exited although it should still be running."""
        code = child.proc.poll()
        if code is not None:
            raise DemoError(
                f"{child.name} exited with code {code}; the end of logs/{child.log.name}:\n{tail(child.log)}"
            )

    def wait(self, child: Child, deadline: float) -> None:
        """Wait for a command that ends by itself; DemoError if it fails or outlives the deadline."""
        try:
            code = child.proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise DemoError(
                f"{child.name} did not finish in time; the end of logs/{child.log.name}:\n{tail(child.log)}"
            ) from None
        if code != 0:
            raise DemoError(
                f"{child.name} failed with code {code}; the end of logs/{child.log.name}:\n{tail(child.log)}"
            )

    @staticmethod
    def stop(child: Child, timeout: float = 30.0) -> int:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout``; returns the exit code."""
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        return int(child.proc.returncode)

    def stop_all(self, timeout: float = 30.0) -> None:
        running = [c for c in reversed(self.started) if c.proc.poll() is None]
        for c in running:
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in running:
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()


_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform == "linux":
    try:
        import ctypes

        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _child_setup() -> None:
    """In the child before exec: take the stop signals again, and get SIGTERM if the demo dies
    without cleaning up (e.g. SIGKILL)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
