"""Service settings of the learner (environment ``MBC_*``, TOML table ``[learner]``).

Model and training hyperparameters are *not* here: they are frozen dataclasses in
:mod:`learner.model.config`, saved inside every checkpoint.
"""

from __future__ import annotations

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
