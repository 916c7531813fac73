"""The demo's own error: which step failed and which log to read."""

from __future__ import annotations

from infra.errors import MbcError


class DemoError(MbcError):
    """The demo could not finish; the message says where and which log to read."""

    exit_code = 1
