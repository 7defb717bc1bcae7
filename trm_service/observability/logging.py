"""structlog configuration: one JSON object per line on stdout."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog


def _add_pid(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Every line names its process (several with --workers N)."""
    event["pid"] = os.getpid()
    return event


def configure_logging(level: str = "info") -> None:
    """Render every log event as one JSON line with an ISO timestamp, the level and the process id."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _add_pid,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),  # a third cheaper than json.dumps
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stdout.buffer),  # one write per line: workers share it
        cache_logger_on_first_use=True,
    )
