"""A real gRPC server (and, when asked, its management port) in the test's own process, on
port 0, around a SnapshotHolder the test can install into; and ``async_test`` to run an
async test function (no pytest-asyncio here)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from flagedge.server import Limits, RunningServer, start_server
from flagedge.server.management import start_management
from flagedge.snapshot import SnapshotHolder

from .documents import NOW, build


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test function in a fresh event loop, within a minute."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 60))

    return wrapper


@contextlib.asynccontextmanager
async def serving(
    holder: SnapshotHolder | None = None,
    *,
    limits: Limits | None = None,
    keepalive_interval: float = 20.0,
    stream_deadline: float = 0.0,
    management: bool = False,
    source: str | None = "flags.json",
) -> AsyncIterator[tuple[RunningServer, grpc.aio.Channel]]:
    """The server (``management_port`` set when ``management``) and a channel to it."""
    holder = holder or SnapshotHolder(build())
    server = await start_server(
        holder,
        limits=limits,
        keepalive_interval=keepalive_interval,
        stream_deadline=stream_deadline,
        source=source,
        clock=lambda: NOW,
    )
    probe = None
    if management:
        probe = await start_management(
            "127.0.0.1", 0, server.serving, metrics=server.metrics.exposition
        )
    server.management_port = None if probe is None else probe.port  # type: ignore[attr-defined]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, channel
    finally:
        await channel.close(None)
        await server.stop(1)
        if probe is not None:
            await probe.close()
