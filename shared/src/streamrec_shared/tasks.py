"""Background tasks of a service's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable


async def cancel_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel every task, then wait until each has finished (its cancellation swallowed)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def retry_every(interval_s: float, attempt: Callable[[], Awaitable[bool]]) -> None:
    """Wait ``interval_s``, call ``attempt``; again until it returns True (a dependency that
    was not there at start: run it as a background task, cancel it on shutdown)."""
    while True:
        await asyncio.sleep(interval_s)
        if await attempt():
            return
