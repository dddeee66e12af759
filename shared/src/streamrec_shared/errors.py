"""Domain errors shared by the services; HTTP layers map them to status codes.

Each error class names its stable machine-readable ``code`` and HTTP ``status`` in its class
statement (``class NotFound(StreamrecError, code="not_found", status=404)``); the ones a client
may retry carry ``retry_after`` seconds (sent as ``Retry-After``).
"""

from __future__ import annotations

from typing import Any


class StreamrecError(Exception):
    """Base of every domain error. ``code`` is the stable machine-readable error code."""

    code = "error"
    status = 500

    def __init_subclass__(cls, *, code: str | None = None, status: int | None = None) -> None:
        super().__init_subclass__()
        cls.code = code or cls.code
        cls.status = status or cls.status

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(StreamrecError, code="invalid_request", status=422):
    pass


class NotFound(StreamrecError, code="not_found", status=404):
    pass


class Conflict(StreamrecError, code="conflict", status=409):
    pass


class Unauthorized(StreamrecError, code="unauthorized", status=401):
    pass


class Forbidden(StreamrecError, code="forbidden", status=403):
    pass


class _RetryAfter(StreamrecError):
    """An error the client may retry after ``retry_after`` seconds."""

    default_retry_after = 1.0

    def __init__(
        self, message: str, *, retry_after: float | None = None, details: Any = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = self.default_retry_after if retry_after is None else retry_after


class RateLimited(_RetryAfter, code="rate_limited", status=429):
    pass


class RetryableError(_RetryAfter, code="unavailable", status=503):
    """A dependency is unavailable right now; the client may retry after ``retry_after`` s."""


class ModelNotReady(RetryableError, code="model_not_ready"):
    pass
