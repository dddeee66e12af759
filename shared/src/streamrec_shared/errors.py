"""Domain errors shared by the services; HTTP layers map them to status codes."""

from __future__ import annotations

from typing import Any


class StreamrecError(Exception):
    """Base of every domain error. ``code`` is the stable machine-readable error code."""

    code = "error"
    status = 500

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(StreamrecError):
    code = "invalid_request"
    status = 422


class NotFound(StreamrecError):
    code = "not_found"
    status = 404


class Conflict(StreamrecError):
    code = "conflict"
    status = 409


class Unauthorized(StreamrecError):
    code = "unauthorized"
    status = 401


class Forbidden(StreamrecError):
    code = "forbidden"
    status = 403


class RateLimited(StreamrecError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class RetryableError(StreamrecError):
    """A dependency is unavailable right now; the client may retry after ``retry_after`` s."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: float = 1.0, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class ModelNotReady(RetryableError):
    code = "model_not_ready"
