"""Shared pieces for the server tests: a flag document covering every row of the flagd
result table, and a real server on port 0 around a SnapshotHolder."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from flagedge.server import Limits, RunningServer, start_server
from flagedge.server.management import start_management
from flagedge.snapshot import Snapshot, SnapshotHolder

NOW = 1_700_000_000

DOCUMENT: dict[str, Any] = {
    "metadata": {"flagSetId": "shop", "version": "7"},
    "flags": {
        "static-bool": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"owner": "checkout"},
        },
        "targeted-string": {
            "state": "ENABLED",
            "variants": {"red": "#f00", "blue": "#00f"},
            "defaultVariant": "red",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "blue", None]},
        },
        "shorthand-bool": {
            "state": "ENABLED",
            "variants": {"true": True, "false": False},
            "defaultVariant": "false",
            "targeting": {"==": [{"var": "tier"}, "gold"]},
        },
        "int-flag": {
            "state": "ENABLED",
            "variants": {"one": 1, "pi": 3.14},
            "defaultVariant": "one",
            "targeting": {"if": [{"==": [{"var": "want"}, "pi"]}, "pi", None]},
        },
        "float-flag": {
            "state": "ENABLED",
            "variants": {"half": 0.5, "two": 2},
            "defaultVariant": "half",
        },
        "object-flag": {
            "state": "ENABLED",
            "variants": {"a": {"size": 3, "name": "A"}, "b": {"size": 4}},
            "defaultVariant": "a",
        },
        "no-default": {"state": "ENABLED", "variants": {"x": "X", "y": "Y"}},
        "null-default": {
            "state": "ENABLED",
            "variants": {"x": "X", "y": "Y"},
            "defaultVariant": None,
            "targeting": {"if": [{"==": [{"var": "pick"}, "y"]}, "y", None]},
        },
        "disabled-flag": {
            "state": "DISABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"owner": "ops"},
        },
        "bad-rule": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"no_such_operator": [1, 2]},
        },
        "unknown-variant": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [True, "missing", "off"]},
        },
        "other-set": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"flagSetId": "other"},
        },
    },
}


def build(document: dict[str, Any] | None = None, version: int = 1) -> Snapshot:
    return Snapshot.build(document or DOCUMENT, version=version)


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test function in a fresh event loop (no pytest-asyncio here)."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
