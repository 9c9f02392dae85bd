"""Secrets never leave the process: any ingest key or bearer credential in text is replaced.

One rule for every way text leaves: log lines (`ScrubLogFilter`) and error reports to Sentry
(ackly/sentry.py).
"""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any

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


class ScrubLogFilter(logging.Filter):
    """Rewrites a record whose formatted message holds a key; every record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        return True
