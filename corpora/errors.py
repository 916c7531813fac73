"""The one error type of dataset files (see :mod:`infra.errors`): a missing file, a file not in the
format it was said to have, a malformed row. The message names the file and, where there is one,
the line: ``data.jsonl:3: not valid JSON: …``."""

from __future__ import annotations

from pathlib import Path

from infra.errors import MbcError


class DatasetError(MbcError):
    """A dataset file cannot be read, or is not in the format it was said to have."""

    def __init__(self, path: Path | str | None, message: str, line: int | None = None) -> None:
        if path is None:
            where = ""
        elif line is None:
            where = f"{path}: "
        else:
            where = f"{path}:{line}: "
        super().__init__(f"{where}{message}")
        self.path = Path(path) if path is not None else None
        self.line = line
