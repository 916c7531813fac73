"""Error types shared by all packages.

A user mistake (bad configuration, a missing file, an unreachable broker) raises a subclass of
:class:`MbcError`; the CLI prints its message on one line and exits with ``exit_code`` instead of
showing a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MbcError(Exception):
    """Base class for errors that are reported to the user as one clear line."""

    exit_code: int = 2


class ConfigError(MbcError):
    """The configuration (environment, config file or options) is invalid."""


class BrokerError(MbcError):
    """Kafka could not be reached or an embedded broker could not be started."""
