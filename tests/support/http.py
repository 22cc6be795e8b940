"""The HTTP port in the test's own process: a real OFREP/Connect listener on port 0 around a
SnapshotHolder, an aiohttp client for it, raw-socket requests (bytes no client library would
send), an auth file with tokens, and a throwaway certificate for HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from flagedge.auth import Scope, entry_for, new_token
from flagedge.serve.config import SecurityConfig
from flagedge.serve.security import Security
from flagedge.server.http import HttpLimits
from flagedge.server.web import RunningHttp, start_http
from flagedge.snapshot import SnapshotHolder
from flagedge.wire import Limits

from .documents import NOW, build


@dataclass
class Served:
    running: RunningHttp
    holder: SnapshotHolder
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.running.port}"

    async def post(
        self, path: str, body: Any = None, *, raw: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, Any] | None, aiohttp.typedefs.LooseHeaders]:
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        hdrs.setdefault("Content-Type", "application/json")
        async with self.session.post(self.base + path, data=data, headers=hdrs) as response:
            text = await response.read()
            parsed = json.loads(text) if text else None
            return response.status, parsed, response.headers


@contextlib.asynccontextmanager
async def http_serving(
    holder: SnapshotHolder | None = None,
    *,
    http: HttpLimits | None = None,
    limits: Limits | None = None,
    security: Security | None = None,
    rate: float = 0.0,
    burst: int = 0,
    source: str | None = "flags.json",
) -> AsyncIterator[Served]:
    holder = holder or SnapshotHolder(build())
    authorize = None
    if security is not None and security.checks_tokens:
        checked = security

        def authorize_call(authorization: str | None, api_key: str | None) -> Any:
            return checked.authorize(Scope.EVALUATE, authorization, api_key)

        authorize = authorize_call
    running = await start_http(
        holder,
        http=http,
        limits=limits,
        authorize=authorize,
        rate=rate,
        burst=burst,
        source=source,
        clock=lambda: NOW,
        grace=1.0,
    )
    session = aiohttp.ClientSession()
    try:
        yield Served(running, holder, session)
    finally:
        await session.close()
        await running.stop()


async def raw_request(port: int, data: bytes, *, read_timeout: float = 10.0) -> tuple[int, bytes]:
    """Send bytes as they are (no client library to fix them up); the status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(read_timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split()[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
        return status, body
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def post_bytes(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@dataclass(frozen=True)
class Tokens:
    path: Path
    everything: str  # evaluate, every flag
    static_only: str  # evaluate, flags starting "static-"
    sync_only: str  # no evaluate scope


def auth_file(tmp: Path) -> Tokens:
    everything, static_only, sync_only = new_token(), new_token(), new_token()
    document = {
        "tokens": [
            entry_for("all-flags", everything, ["evaluate"]),
            entry_for("static", static_only, ["evaluate"], flags=["static-"]),
            entry_for("syncer", sync_only, ["sync"]),
        ]
    }
    path = tmp / "auth.json"
    path.write_text(json.dumps(document))
    return Tokens(path, everything, static_only, sync_only)


def security_for(tokens: Tokens) -> Security:
    return Security(SecurityConfig(auth_file=str(tokens.path)))
