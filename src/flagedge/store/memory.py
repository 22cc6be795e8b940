"""The in-memory twin of the control plane's store, for unit tests of the edge.

It keeps what Redis keeps (store/plane.py) in dicts and applies a Write with the Lua
script's semantics (store/redis.py: the version bound, the change record), so a test can
drive an EdgeSync through duplicates, gaps, garbage, forged messages and outages without a
redis-server. Integration tests use the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType

from ..errors import DefinitionError, Problem, StoreUnavailable
from .plane import (
    MAX_VERSION,
    ChangeCheck,
    ChangeKind,
    ChangeMessage,
    Heartbeat,
    RawState,
    Resubscribed,
    Subscription,
    Write,
    WriteResult,
    encode_override,
    usage_field,
)


class MemoryPlane:
    """The store in a dict, with the Lua script's semantics, for unit tests of the sync.

    ``down = True`` makes every call raise StoreUnavailable and ends open subscriptions, as
    a Redis outage would; ``publish_raw`` injects any message (duplicates, gaps, garbage).
    """

    def __init__(self) -> None:
        self.version_ = 0
        self.definitions: bytes | None = None
        self.overrides: dict[str, bytes] = {}
        self.change: bytes | None = None  # the message the last write published
        self.audit: list[dict[str, str]] = []
        self.heartbeats: dict[str, Heartbeat] = {}
        self.usage: dict[str, dict[bytes, int]] = {}  # day -> usage hash
        self.usage_since: str | None = None
        self._subscribers: set[asyncio.Queue[bytes | Resubscribed | None]] = set()
        self._down = False
        self.loads = 0

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        if value:
            for queue in self._subscribers:
                queue.put_nowait(None)  # the connection dropped

    def _check(self) -> None:
        if self._down:
            raise StoreUnavailable("memory plane is down")

    def write(self, w: Write) -> WriteResult:
        self._check()
        if self.version_ != w.expected:
            return WriteResult(False, self.version_)
        if max(self.version_, w.floor) >= MAX_VERSION:
            raise DefinitionError(
                [Problem("version", "the next version would pass 2^53-1; nothing written")]
            )
        reseeded = w.floor > self.version_
        self.version_ = max(self.version_, w.floor) + 1
        if w.kind is ChangeKind.DEFINITIONS:
            self.definitions = w.definitions
        elif w.override is None:
            self.overrides.pop(w.flag, None)
        else:
            self.overrides[w.flag] = encode_override(w.override)
        ts = int(time.time() * 1000)
        self.audit.append(
            {
                "actor": w.actor,
                "action": w.action,
                "flag": w.flag,
                "before": w.before,
                "after": w.after,
                "version": str(self.version_),
                "ts": str(ts),
            }
        )
        if reseeded or w.kind is ChangeKind.DEFINITIONS:
            message = ChangeMessage(self.version_, ChangeKind.DEFINITIONS)
        else:
            message = ChangeMessage(self.version_, w.kind, w.flag, w.override)
        self.change = message.to_json()
        self.publish_raw(self.change)
        return WriteResult(True, self.version_, ts)

    def publish_raw(self, data: bytes) -> None:
        for queue in self._subscribers:
            queue.put_nowait(data)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        self._check()
        queue: asyncio.Queue[bytes | Resubscribed | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield _MemorySubscription(queue)
        finally:
            self._subscribers.discard(queue)

    async def load(self) -> RawState:
        self._check()
        self.loads += 1
        return RawState(self.version_, self.definitions, MappingProxyType(dict(self.overrides)))

    async def version(self) -> int:
        self._check()
        return self.version_

    async def read_change(self) -> ChangeCheck:
        self._check()
        return ChangeCheck(self.version_, self.change)

    async def heartbeat(self, beat: Heartbeat) -> None:
        self._check()
        self.heartbeats[beat.id] = beat

    async def remove_heartbeat(self, edge_id: str) -> None:
        if not self._down:
            self.heartbeats.pop(edge_id, None)

    async def add_usage(
        self, day: str, counts: Mapping[tuple[str, str], int], ttl_seconds: int
    ) -> None:
        self._check()
        hashed = self.usage.setdefault(day, {})
        for (flag, variant), n in counts.items():
            field = usage_field(flag, variant)
            hashed[field] = hashed.get(field, 0) + n
        self.usage_since = self.usage_since or day

    async def close(self) -> None:
        pass


class _MemorySubscription:
    def __init__(self, queue: asyncio.Queue[bytes | Resubscribed | None]) -> None:
        self._queue = queue

    async def next(self, timeout: float) -> bytes | Resubscribed | None:
        try:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if item is None:
            raise StoreUnavailable("memory plane went down")
        return item
