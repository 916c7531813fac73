"""What every benchmark records about the machine it ran on (imported by the bench scripts)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    found = (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    return next(found, "") or platform.processor()
