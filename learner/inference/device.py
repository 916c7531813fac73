"""Where inference runs, and honest timing there (CUDA synchronized on both ends)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from infra.logging import get_logger

log = get_logger(__name__)


def pick_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when available; asking for CUDA without one falls back to CPU with a warning."""
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        log.warning("CUDA requested but not available; running on CPU")
        warnings.warn("CUDA requested but not available; running on CPU", RuntimeWarning, stacklevel=2)
    return torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(device: torch.device, out: list[float]) -> Iterator[None]:
    """Append the wall time of the block (CUDA synchronized on both ends), in seconds, to ``out``."""
    sync(device)
    t0 = time.perf_counter()
    yield
    sync(device)
    out.append(time.perf_counter() - t0)
