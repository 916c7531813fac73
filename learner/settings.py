"""Service settings of the learner (environment ``MBC_*``, TOML table ``[learner]``).

Model and training hyperparameters are *not* here: they are frozen dataclasses in
:mod:`learner.model.config`, saved inside every checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from infra.settings import ServiceSettings

Device = Literal["auto", "cpu", "cuda"]  # every command's --device / MBC_DEVICE


class LearnerSettings(ServiceSettings):
    """Where runs go, which device to use, and whether the Hugging Face hub may be contacted."""

    section: ClassVar[str] = "learner"
    runs_dir: Path = Field(Path("runs"), description="default parent folder of training runs")
    device: Device = Field("auto", description="auto: CUDA when available")
    hf_offline: bool = Field(
        True, description="set HF_HUB_OFFLINE=1 so that nothing is downloaded (models load from local paths)"
    )
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; default: torch's choice")


def setup_learner(service: str = "learner") -> LearnerSettings:
    """The learner's settings, with logging configured and the hub and thread settings applied
    (every learner command starts with this)."""
    from infra.logging import configure_logging
    from infra.settings import load_settings

    settings = load_settings(LearnerSettings)
    configure_logging(service, settings.log_level, settings.log_json)
    if settings.hf_offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if settings.num_threads:
        import torch

        torch.set_num_threads(settings.num_threads)
    return settings
