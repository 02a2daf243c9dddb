"""Structured logging: one JSON object per line, fields passed explicitly, secrets never.

Code logs with `log.info("event", extra={"fields": {...}})`. The formatter writes `ts`, `level`,
`logger`, `msg` and those fields. As a second line of defence against a careless call, any field
or message text that looks like a password hash, a bearer token or a URL with a password is
redacted before it is written; callers still must never pass passwords or tokens.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

from .settings import Settings

_REDACTIONS = (
    (re.compile(r"\$argon2[a-z]*\$[^\s\"']+"), "[redacted-hash]"),
    (re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"), "[redacted-hash]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(\w+://[^:/@\s]*:)[^@\s]+@"), r"\1[redacted]@"),
    (re.compile(r"(?i)((?:password|token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line with the explicit `fields` it carries."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, separators=(",", ":")))


class TextFormatter(logging.Formatter):
    """Human-readable variant for a terminal; same redaction."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            base += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return redact(base)


class _PhoenixHandler(logging.StreamHandler[TextIO]):
    """The stderr handler this module installs; its class is how a second call finds it."""


def configure_logging(settings: Settings) -> None:
    """Install one stderr handler on the root logger (idempotent: replaces our previous handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _PhoenixHandler):
            root.removeHandler(handler)
    handler = _PhoenixHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # uvicorn's own loggers go through the same handler and format.
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
