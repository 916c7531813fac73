"""What every benchmark records about the machine it ran on (imported by the bench scripts).

:func:`host_machine` is the host (CPU, cores, memory, OS, Python, load at the start),
:func:`torch_machine` what a training figure needs (CPU, torch, GPU); a script adds its own
libraries' versions to one or both, and :func:`load_average` again at its end.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    found = (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    return next(found, "") or platform.processor()


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, to two places (shared machines: how noisy a figure is)."""
    return [round(x, 2) for x in os.getloadavg()]


def host_machine() -> dict[str, Any]:
    """CPU model, logical cores, memory (GiB), OS, Python and the load average now (at the start)."""
    import psutil

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
    }


def torch_machine() -> dict[str, str | None]:
    """CPU model, torch version and GPU name (None without CUDA): the minimum a training figure needs."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "torch": torch.__version__, "gpu": gpu}
