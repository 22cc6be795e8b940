"""The HTTP evaluation port (``--ofrep-port``, as flagd's 8016): OFREP and flagd's evaluation
service over Connect JSON, on one aiohttp listener over one SnapshotHolder.

    start_http(holder, host, port, ...) -> RunningHttp(port)
        /ofrep/v1/...                    ofrep.py     (and its SSE change stream)
        /flagd.evaluation.v{1,2}.Service connect.py   (flagd.py's servicers)
        everything else                  404 / 405, JSON

One ChangeHub feeds the event streams; closing the server ends them, then lets in-flight
calls finish within ``grace``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_request import BaseRequest

from flagedge.metrics import ServerMetrics
from flagedge.server.connect import ConnectService
from flagedge.server.events import ChangeHub
from flagedge.server.flagd import FlagdCore, unix_now
from flagedge.server.http import HttpLimits, HttpServer, RateLimit, Routes, json_response
from flagedge.server.ofrep import Authorize, OfrepService
from flagedge.snapshot import SnapshotHolder
from flagedge.wire import Limits


class RunningHttp:
    def __init__(self, server: HttpServer, hub: ChangeHub, ofrep: OfrepService) -> None:
        self.server = server
        self.hub = hub
        self.ofrep = ofrep
        self.port = server.port

    async def stop(self) -> None:
        await self.server.close()


def _miss(request: BaseRequest, status: int) -> web.StreamResponse:
    if status == 404:
        return json_response(404, {"errorDetails": f"nothing is served at {request.path}"})
    return json_response(405, {"errorDetails": f"{request.method} is not served at {request.path}"})


async def start_http(
    holder: SnapshotHolder,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    http: HttpLimits | None = None,
    limits: Limits | None = None,
    authorize: Authorize | None = None,
    rate: float = 0.0,
    burst: int = 0,
    source: str | None = None,
    metrics: ServerMetrics | None = None,
    reuse_port: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    grace: float = 5.0,
    clock: Callable[[], int] = unix_now,
) -> RunningHttp:
    """Serve OFREP and Connect on ``host:port`` (0: any free port); returns once bound.

    ``authorize`` checks a call's Authorization / X-API-Key headers (None: open);
    ``rate`` (calls per second per caller name, 0: none) answers 429 past it.
    """
    http = http or HttpLimits()
    limits = limits or Limits()
    metrics = metrics or ServerMetrics()
    metrics.bind(holder)
    hub = ChangeHub(holder, asyncio.get_running_loop())
    limiter = RateLimit(rate, burst) if rate > 0 else None
    ofrep = OfrepService(
        holder,
        hub,
        http=http,
        limits=limits,
        authorize=authorize,
        rate=limiter,
        metrics=metrics,
        clock=clock,
    )
    core = FlagdCore(
        holder, hub, limits, source=source, clock=clock, evaluations=metrics.evaluations
    )
    connect = ConnectService(core, http=http, authorize=authorize, rate=limiter, metrics=metrics)
    routes = Routes()
    ofrep.add_routes(routes)
    connect.add_routes(routes)
    server = HttpServer(routes, http, miss=_miss, grace=grace)
    server.on_close(hub.close)
    try:
        await server.start(host, port, reuse_port=reuse_port, ssl_context=ssl_context)
    except BaseException:
        hub.close()
        raise
    return RunningHttp(server, hub, ofrep)
