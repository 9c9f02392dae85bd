"""Secrets never leave the process: any ingest key or bearer credential in text is replaced.

One rule for every way text leaves: log lines (the formatters below, for both LOG_FORMATs) and
error reports to Sentry (ackly/sentry.py).
"""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FILTERED = "[Filtered]"
# "Bearer <anything>" as a header value or inside a message.
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")


@cache
def _key_pattern() -> re.Pattern[str]:
    # Imported on first use: settings (which may start Sentry) load before the apps.
    from sources.keys import KEY_PATTERN

    return KEY_PATTERN


def scrub_text(text: str) -> str:
    if "ak_" not in text and "earer" not in text and "EARER" not in text:  # the common case
        return text
    return _BEARER.sub(FILTERED, _key_pattern().sub(FILTERED, text))


def scrub(value: Any) -> Any:
    """`value` with every string in it scrubbed (dicts and lists walked)."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value


class ScrubbingFormatter(logging.Formatter):
    """The plain log format, every line scrubbed as written (message, traceback, stack)."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


class ScrubbingJsonFormatter(JsonFormatter):
    """LOG_FORMAT=json: each field of the object scrubbed before it is serialised (scrubbing
    the serialised text could cut through its quoting)."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return scrub(super().process_log_record(log_data))
