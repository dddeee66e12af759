"""Background tasks of a service's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait until each has finished (its cancellation swallowed)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """``cancel_all`` of one task, or nothing when there is none."""
    if task is not None:
        await cancel_all((task,))


async def retry_every(interval_s: float, attempt: Callable[[], Awaitable[bool]]) -> None:
    """Wait ``interval_s``, call ``attempt``; again until it returns True (a dependency that
    was not there at start: run it as a background task, cancel it on shutdown)."""
    while True:
        await asyncio.sleep(interval_s)
        if await attempt():
            return
