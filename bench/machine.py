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


def torch_machine() -> dict[str, str | None]:
    """CPU model, torch version and GPU name (None without CUDA): the minimum a training figure needs."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "torch": torch.__version__, "gpu": gpu}
