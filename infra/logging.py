"""Structured logging for every service.

``configure_logging("learner")`` sets up structlog and routes the standard library's logging
(faust, uvicorn, alembic, librdkafka through confluent-kafka) through the same renderer, so every
line a service prints carries ``service=<name>``. Output is JSON when stderr is not a terminal
and human-readable when it is.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_service = "mbc"


def _add_service(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.setdefault("service", _service)
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and stdlib logging for ``service``.

    ``json=None`` picks JSON unless stderr is a TTY.
    """
    global _service
    _service = service
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_service,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty libraries stay at WARNING unless asked for DEBUG.
    for noisy in (
        "aiokafka",
        "kafka",
        "faust",
        "mode",
        "httpx",
        "httpcore",
        "urllib3",
        "filelock",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; the service name is added to every event."""
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]
