"""Stage lines on stderr while ``mbc demo`` runs."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """Stage lines on stderr: ``[3/8] what ...`` then ``      result (1.2 s)``."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total, self.n = total, 0
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self._started = time.monotonic()
        self.current = "starting"

    def step(self, text: str) -> None:
        self.n += 1
        self.current = text
        self._started = time.monotonic()
        print(f"[{self.n}/{self.total}] {text}", file=self.stream, flush=True)

    def done(self, text: str) -> None:
        print(f"      {text} ({time.monotonic() - self._started:.1f} s)", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(f"      {text}", file=self.stream, flush=True)
