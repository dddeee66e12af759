"""The one polling helper of the test suite: wait for the system to reach a state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _arrived(value: object) -> bool:
    return value is not None and value is not False


def now(check: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A synchronous check as a probe for ``eventually`` (state another task changes)."""

    async def probe() -> T:
        return check()

    return probe


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = _arrived,
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Await ``probe()`` until ``done(value)`` holds and return that value; fail naming
    ``what`` (and the last value) after ``timeout`` seconds.

    Without ``done``, any value other than None and False ends the wait, so a probe can return
    ``True``/``False`` or "the thing, or None while it is not there yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {value!r}")
        await asyncio.sleep(interval)
