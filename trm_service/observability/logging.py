"""structlog configuration: one JSON object per line on stdout."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog


class _AddPid:
    """Every line names its process (several with --workers N); the id is read once, at configuration
    (each worker process configures its own logging), not with a system call per line."""

    def __init__(self) -> None:
        self._pid = os.getpid()

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["pid"] = self._pid
        return event


def configure_logging(level: str = "info") -> None:
    """Render every log event as one JSON line with an ISO timestamp, the level and the process id."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _AddPid(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),  # a third cheaper than json.dumps
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stdout.buffer),  # one write per line: workers share it
        cache_logger_on_first_use=True,
    )
