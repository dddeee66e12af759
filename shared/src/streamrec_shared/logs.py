"""Logging: JSON lines to stdout, configured once per entry point, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

_SECRET = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]+)@", re.I)
_KEY = re.compile(r"(?i)(x-api-key|api_key|password|secret)(\"?\s*[:=]\s*\"?)([^\s\",}]+)")


def redact(text: str) -> str:
    """Hide passwords in DSNs/URLs and values of key-like fields."""
    text = _SECRET.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEY.sub(lambda m: f"{m[1]}{m[2]}***", text)


class _RedactingJson(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _RedactingText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(service: str, level: str = "INFO", *, json_format: bool = True) -> None:
    """Install one stdout handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    if json_format:
        handler.setFormatter(
            _RedactingJson(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    else:
        handler.setFormatter(
            _RedactingText(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
