"""Logging set-up for the worker process, with secrets scrubbed from every record.

The code never formats a secret into a log line on purpose; this filter is the second line, for
what it does not control: an exception from a client library that repeats a URL or a config
value, a traceback, a DEBUG line of a dependency.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

MASK = "***"


class SecretFilter(logging.Filter):
    """Replaces each known secret value in a record's message and traceback with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so that a whole URL is masked before the password inside it.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._formatter = logging.Formatter()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def install_secret_filter(secrets: Iterable[str], logger: logging.Logger | None = None) -> SecretFilter:
    """On every handler of `logger` (the root logger by default): handler filters see the records
    of every logger that propagates to it, where a logger's own filter would see only its own."""
    flt = SecretFilter(secrets)
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(flt)
    return flt


__all__ = ["MASK", "SecretFilter", "install_secret_filter"]
