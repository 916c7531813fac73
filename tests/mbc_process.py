"""`mbc` in a child process, for tests that need what only a real process shows: the exit status,
stderr as a user sees it (one-line errors, no traceback), the environment it reads its settings from.

``MBC`` is the command line (no console script needed, so it runs from a bare checkout); ``run_mbc``
runs it to the end and returns its output as text.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

MBC = [sys.executable, "-c", "from mbc.cli import main; main()"]


def run_mbc(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``mbc *args`` to the end, output captured as text; ``kwargs`` (``cwd``, ``env``) go to
    :func:`subprocess.run`."""
    return subprocess.run([*MBC, *args], capture_output=True, text=True, timeout=timeout, **kwargs)
