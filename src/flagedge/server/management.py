"""The management HTTP port: ``/healthz`` (the process is up), ``/readyz`` (a snapshot is
loaded and the gRPC port is serving; with ``details``, also where the state came from, e.g.
whether a Redis-fed edge serves stale last-known-good state) and ``/metrics`` (Prometheus,
from flagedge/metrics.py, when ``metrics`` is given).

GET and HEAD only (HEAD: the same status and headers, no body). /metrics negotiates its
format with prometheus_client's own encoder: OpenMetrics when the Accept header asks for
it, the Prometheus text format otherwise. Every answer closes its connection, as probes
and scrapers expect one answer per connection. Served by server/http.py (aiohttp).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.web_request import BaseRequest

from flagedge.server.http import HttpLimits, HttpServer, Routes, json_response

# negotiate(Accept header) -> (body, content type): ServerMetrics.negotiated
Negotiate = Callable[[str], tuple[bytes, str]]
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"

# Probes send no body; a small cap keeps a confused client from costing anything.
_LIMITS = HttpLimits(max_body_bytes=8192, body_timeout=5.0, max_streams=0, keepalive_timeout=5.0)


class ManagementServer:
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self.port = server.port

    async def close(self) -> None:
        await self._server.close()


def _closing(response: web.StreamResponse) -> web.StreamResponse:
    response.force_close()
    return response


async def start_management(
    host: str,
    port: int,
    ready: Callable[[], bool],
    *,
    reuse_port: bool = False,
    details: Callable[[], Mapping[str, object]] | None = None,
    metrics: Callable[[], bytes] | None = None,
    negotiate: Negotiate | None = None,
) -> ManagementServer:
    """``metrics``: the Prometheus text format; ``negotiate``: every format by the Accept
    header (it answers /metrics when given)."""
    routes = Routes()

    async def healthz(request: BaseRequest) -> web.StreamResponse:
        return _closing(json_response(200, {"status": "ok", "pid": os.getpid()}))

    async def readyz(request: BaseRequest) -> web.StreamResponse:
        extra = {} if details is None else dict(details())
        if ready():
            return _closing(json_response(200, {"status": "ready", "pid": os.getpid(), **extra}))
        body = {"status": "not ready", "pid": os.getpid(), **extra}
        return _closing(json_response(503, body))

    routes.add("GET", "/healthz", healthz)
    routes.add("GET", "/readyz", readyz)
    if metrics is not None or negotiate is not None:
        text = metrics

        async def scrape(request: BaseRequest) -> web.StreamResponse:
            if negotiate is not None:
                body, content_type = negotiate(request.headers.get("Accept", ""))
            else:
                assert text is not None
                body, content_type = text(), TEXT_FORMAT
            return _closing(web.Response(body=body, headers={"Content-Type": content_type}))

        routes.add("GET", "/metrics", scrape)

    def miss(request: BaseRequest, status: int) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):  # as before aiohttp: the method first
            return _closing(json_response(405, {"error": "only GET is served"}))
        return _closing(json_response(status, {"error": "not found"}))

    server = HttpServer(routes, _LIMITS, miss=miss, grace=1.0)
    await server.start(host, port, reuse_port=reuse_port)
    return ManagementServer(server)
