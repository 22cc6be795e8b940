"""The management HTTP port: ``/healthz`` (the process is up), ``/readyz`` (a snapshot is
loaded and the gRPC port is serving; with ``details``, also where the state came from, e.g.
whether a Redis-fed edge serves stale last-known-good state) and ``/metrics`` (Prometheus
text format, from flagedge/metrics.py, when ``metrics`` is given). A few lines of asyncio
instead of a web framework: probes and scrapers send one GET and read one answer.

HEAD answers the headers GET would, with no body. The port is as open as the gRPC one, so
it is bounded: a request head is read within 5 s and at most 8 KiB of it, and at most
MAX_CONNECTIONS are served at once (more are closed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping

log = logging.getLogger("flagedge.server")

_MAX_REQUEST = 8192
MAX_CONNECTIONS = 256
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ManagementServer:
    def __init__(self, server: asyncio.Server, port: int) -> None:
        self._server = server
        self.port = port

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)


async def start_management(
    host: str,
    port: int,
    ready: Callable[[], bool],
    *,
    reuse_port: bool = False,
    details: Callable[[], Mapping[str, object]] | None = None,
    metrics: Callable[[], bytes] | None = None,
) -> ManagementServer:
    open_connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_connections
        if open_connections >= MAX_CONNECTIONS:
            writer.close()
            return
        open_connections += 1
        try:
            await answer(reader, writer)
        finally:
            open_connections -= 1

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        content_type = "application/json"
        head = b""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            if metrics is not None and _path(head) == b"/metrics":
                status, payload = "200 OK", metrics()
                content_type = METRICS_CONTENT_TYPE
            else:
                status, document = _answer(head[:_MAX_REQUEST], ready, details)
                payload = json.dumps(document).encode()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, payload = "400 Bad Request", json.dumps({"error": "bad request"}).encode()
        except ConnectionError:
            writer.close()
            return
        except Exception:  # a probe must get an answer, and the port must keep serving
            log.exception("management request failed")
            status, payload = "500 Internal Server Error", b'{"error": "internal error"}'
            content_type = "application/json"
        body = b"" if head.startswith(b"HEAD ") else payload  # HEAD: the headers alone
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        try:
            await asyncio.wait_for(writer.drain(), 10.0)
        except TimeoutError:
            # A reader that never reads cannot hold the connection (and its buffer) for ever:
            # close() would wait for the buffer to drain.
            writer.transport.abort()
            return
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(
        handle, host, port, reuse_port=reuse_port or None, limit=_MAX_REQUEST
    )
    bound = server.sockets[0].getsockname()[1]
    return ManagementServer(server, bound)


def _path(head: bytes) -> bytes | None:
    """The path of a GET or HEAD request line, without its query."""
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
        return None
    return parts[1].split(b"?", 1)[0]


def _answer(
    head: bytes,
    ready: Callable[[], bool],
    details: Callable[[], Mapping[str, object]] | None = None,
) -> tuple[str, dict[str, object]]:
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
        return "405 Method Not Allowed", {"error": "only GET is served"}
    path = parts[1].split(b"?", 1)[0]
    if path == b"/healthz":
        return "200 OK", {"status": "ok", "pid": os.getpid()}
    if path == b"/readyz":
        extra = {} if details is None else dict(details())
        if ready():
            return "200 OK", {"status": "ready", "pid": os.getpid(), **extra}
        return "503 Service Unavailable", {"status": "not ready", "pid": os.getpid(), **extra}
    return "404 Not Found", {"error": "not found"}
