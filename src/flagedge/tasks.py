"""Background tasks: stopping one.

Every long-lived loop of a process (the metrics fold, usage reports, a source's watcher, the
admin service's certificate watcher) is an asyncio task stopped the same way, here.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: nothing to stop) and wait until it has ended. The task's own
    CancelledError ends here; a cancellation of the caller while it waits still reaches the
    caller (a bare ``suppress(CancelledError)`` would swallow that one too)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
