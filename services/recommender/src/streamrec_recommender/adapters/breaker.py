"""A small circuit breaker so a dead dependency does not add its timeout to every request.

Closed: calls go through; ``failures`` consecutive failures open it. Open: calls are refused at
once (the caller degrades) for ``open_s`` seconds. Then half-open: one call is let through as a
probe; success closes the breaker, failure opens it again. Time comes from ``clock`` (tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int = 3,
        open_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.max_failures = failures
        self.open_s = open_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.open_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go through now? (In half-open state only one probe at a time.)"""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self._probing = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.max_failures:
            self._opened_at = self._clock()
