"""Errors the learner reports to the user as one line (see :mod:`infra.errors`)."""

from __future__ import annotations

from pathlib import Path

from infra.errors import MbcError


class LearnerError(MbcError):
    """Base class of the learner's user-facing errors."""


class ConfigValueError(LearnerError):
    """A model or training setting is invalid or inconsistent."""


class DataFormatError(LearnerError):
    """A dataset file is missing, malformed, or has a malformed row."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line


class CheckpointError(LearnerError):
    """A checkpoint is missing, incomplete, or does not fit the requested use."""


class ModelLoadError(LearnerError):
    """A model or tokenizer could not be loaded (offline, missing local files, missing extra)."""


class BlankQuestion(LearnerError):
    """A question with nothing to answer: empty, or only spaces (`mbc ask` exit 2, POST /ask 422)."""
