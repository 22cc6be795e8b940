"""Snapshot changes, fanned out to every open event stream.

    SnapshotHolder.install (any thread)
        -> ChangeHub._on_install --call_soon_threadsafe--> ChangeHub._publish (event loop)
            -> one asyncio.Queue per open stream (flagd EventStream, native Watch)

The holder calls subscribers in the installing thread, which may be a file watcher's worker
thread or a store's listener; the hop onto the loop keeps every queue touched by one thread.
Each Change carries the previous snapshot too, so a flagd stream can tell a new key (write)
from a changed one (update) and a removed one (delete).

A stream's queue is a Mailbox that holds at most one pending Change: changes that arrive
before the stream takes the last one merge into it (the earliest previous snapshot, the
latest current one, the union of keys), so that a client that stops reading costs one
pending change and never a growing queue, and still hears every key that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from flagedge.snapshot import Snapshot, SnapshotHolder


@dataclass(frozen=True, slots=True)
class Change:
    previous: Snapshot | None
    current: Snapshot
    changed: frozenset[str]

    def kind(self, key: str) -> str:
        """flagd's change type for one key: write (new), delete (gone) or update."""
        if self.previous is None or key not in self.previous.flags:
            return "write"
        if key not in self.current.flags:
            return "delete"
        return "update"


class Shutdown:
    def __repr__(self) -> str:
        return "SHUTDOWN"


SHUTDOWN: Final = Shutdown()
Event = Change | Shutdown


class Mailbox:
    """One stream's pending event: a Change (merged while not taken) or Shutdown."""

    __slots__ = ("_pending", "_ready", "_shutdown")

    def __init__(self) -> None:
        self._pending: Change | None = None
        self._shutdown = False
        self._ready = asyncio.Event()

    def put_nowait(self, event: Event) -> None:
        if isinstance(event, Shutdown):
            self._shutdown = True
        elif self._pending is None:
            self._pending = event
        else:
            first = self._pending
            self._pending = Change(first.previous, event.current, first.changed | event.changed)
        self._ready.set()

    def empty(self) -> bool:
        return self._pending is None and not self._shutdown

    async def get(self) -> Event:
        """The pending change (then, once none is left, Shutdown), waiting for one."""
        while self._pending is None and not self._shutdown:
            self._ready.clear()
            await self._ready.wait()
        if self._pending is not None:
            event, self._pending = self._pending, None
            return event
        return SHUTDOWN


class ChangeHub:
    def __init__(self, holder: SnapshotHolder, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last = holder.current
        self._queues: set[Mailbox] = set()
        self._closed = False
        self._unsubscribe = holder.subscribe(self._on_install)

    def _on_install(self, snapshot: Snapshot, changed: frozenset[str]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            self._loop.call_soon_threadsafe(self._publish, snapshot, changed)

    def _publish(self, snapshot: Snapshot, changed: frozenset[str]) -> None:
        previous, self._last = self._last, snapshot
        if self._closed or not changed:
            return
        event = Change(previous, snapshot, frozenset(changed))
        for queue in self._queues:
            queue.put_nowait(event)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Mailbox]:
        queue = Mailbox()
        if self._closed:
            queue.put_nowait(SHUTDOWN)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def close(self) -> None:
        """Tell every stream the server is going away; later subscribers hear it at once."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        for queue in self._queues:
            queue.put_nowait(SHUTDOWN)
