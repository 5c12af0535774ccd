"""Keep secrets out of logs: credentials in URLs and known secret values are masked everywhere."""

from __future__ import annotations

import logging
import re
import sys

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Remember a value (API key, password) that must never be printed."""
    if value and len(value) >= 3:
        _secrets.add(value)


def redact(text: str) -> str:
    """Mask ``user:password@`` in URLs and every registered secret."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", text)
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not the one it was made with: a caller that
    swaps stderr (pytest's capture, a redirect) never leaves logging writing to a closed stream."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property always reads sys.stderr
        pass


def setup_logging(level: str = "INFO") -> None:
    """Log lines to stderr through the redacting filter (called once per process)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(processName)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
