"""`mbc train --max-minutes`: stop early enough to save ``last`` before a wall-clock deadline.

The trainer asks :meth:`Deadline.must_stop` after every optimizer step. It answers yes when the
next step (as long as the longest one so far), an evaluation that step would run, and a
checkpoint save (as long as the longest so far) might not fit before the deadline — so a run on a
machine lent for a fixed time ends with a complete, resumable ``last`` checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Deadline:
    minutes: float | None  # None: no deadline
    start: float = field(default_factory=time.monotonic)
    longest_step: float = 0.0
    longest_eval: float = 0.0
    longest_save: float = 0.0

    def step_took(self, seconds: float) -> None:
        self.longest_step = max(self.longest_step, seconds)

    def eval_took(self, seconds: float) -> None:
        self.longest_eval = max(self.longest_eval, seconds)

    def save_took(self, seconds: float) -> None:
        self.longest_save = max(self.longest_save, seconds)

    def remaining(self) -> float:
        if self.minutes is None:
            return float("inf")
        return self.start + 60.0 * self.minutes - time.monotonic()

    def must_stop_at(self, step: int, eval_every: int | None) -> bool:
        """After optimizer step ``step``: whether one more step (with the evaluation it runs every
        ``eval_every`` steps) and a final save might overrun the deadline."""
        if self.minutes is None:
            return False
        evaluates = eval_every is not None and eval_every > 0 and (step + 1) % eval_every == 0
        need = self.longest_step + 1.5 * self.longest_save + (self.longest_eval if evaluates else 0.0)
        return self.remaining() <= need
