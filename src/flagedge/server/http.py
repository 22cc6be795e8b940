"""HTTP listeners on aiohttp: binding, limits, routing, JSON answers and a graceful stop.

    HttpServer(routes, limits).start(host, port, reuse_port=, ssl_context=) -> bound port
        aiohttp's low-level web.Server (its C parser, on the process's uvloop/asyncio loop)
        └─ Routes.find(method, path) -> handler | 404 | 405      (exact paths, then prefixes)
    HttpServer.close(grace)   stop accepting; open event streams end; in-flight calls finish

Every HTTP front door (management, OFREP, Connect) is built from these pieces, so that each
gets the same body limit, slow-client timeout, stream cap and error shape. The low-level
server rather than web.Application: a front door is a handful of fixed paths, and the
application's router and middleware chain cost more per call than a dict lookup (BENCHMARKS.md,
"OFREP over HTTP").
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest

from flagedge.logs import Throttle

log = logging.getLogger("flagedge.server")


class _ClientFaults(logging.Filter):
    """aiohttp logs a request it cannot parse (garbage, a bad header) at error level with a
    traceback, once per request: abuse would flood the log. Such a request already got its
    400; say so in one warning line without a traceback, at most every 10 s."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = Throttle(10.0)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        left_out = self.lines.allow("bad_request")
        if left_out is None:
            return False
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "refused a request that is not HTTP it can read (%s)%s"
        record.args = (
            type(exc).__name__,
            f"; {left_out} more since the last line" if left_out else "",
        )
        record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(_ClientFaults())

Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]

JSON: Final = "application/json"
_AIOHTTP_CAP: Final = 1024**2  # aiohttp's default client_max_size
_JSON_HEADERS: Final = {"Content-Type": JSON}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP request may cost the server (settings: config/groups.py's HTTP group)."""

    max_body_bytes: int = 1024 * 1024  # larger bodies: 413 before they are read
    body_timeout: float = 10.0  # seconds to receive a whole body (a trickling client: 408)
    max_streams: int = 10_000  # open event streams per process; more: 503 with Retry-After
    keepalive_timeout: float = 75.0  # seconds an idle keep-alive connection stays open


class BodyError(Exception):
    """A request body that is refused before it is parsed: too large, too slow."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer (orjson: non-string keys and NaN are refused, never guessed)."""
    return raw_json(status, orjson.dumps(body), headers)


def raw_json(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    if headers:
        return web.Response(status=status, body=body, headers={**_JSON_HEADERS, **headers})
    return web.Response(status=status, body=body, headers=_JSON_HEADERS)


def buffered_body(request: BaseRequest, limits: HttpLimits) -> bytes | None:
    """The whole body if it has arrived already (the usual small request: it came with the
    headers), else None; BodyError (413) when it is over the limit. No wait and no timer:
    asyncio.timeout alone costs more than the rest of a small call's read."""
    length = request.content_length
    if length is not None and length > limits.max_body_bytes:
        raise BodyError(
            413, f"the body is {length} bytes, over the limit of {limits.max_body_bytes} bytes"
        )
    content = request.content
    if not content.is_eof():
        return None
    data = content.read_nowait()
    if len(data) > limits.max_body_bytes:
        raise BodyError(413, f"the body is over the limit of {limits.max_body_bytes} bytes")
    return data


async def read_body(request: BaseRequest, limits: HttpLimits) -> bytes:
    """The whole body, within ``limits``; BodyError (413, 408) otherwise.

    A declared Content-Length over the limit is refused before a byte is read; a chunked
    body is cut off where it passes the limit (aiohttp's client_max_size, set by
    HttpServer to the same number); a body still arriving after ``body_timeout`` is 408.
    """
    data = buffered_body(request, limits)
    if data is not None:
        return data
    try:
        async with asyncio.timeout(limits.body_timeout):
            return await request.read()
    except TimeoutError:
        raise BodyError(
            408, f"the body did not arrive within {limits.body_timeout:g} seconds"
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise BodyError(
            413, f"the body is over the limit of {limits.max_body_bytes} bytes"
        ) from None


class RateLimit:
    """A token bucket per caller name: ``rate`` calls a second, ``burst`` at once.

    Callers are the auth file's token names (few, and known), so the table stays small.
    """

    def __init__(self, rate: float, burst: int = 0) -> None:
        self.rate = rate
        self.burst = float(burst) if burst > 0 else max(1.0, rate)
        self._buckets: dict[str, list[float]] = {}  # name -> [tokens, when last filled]

    def check(self, name: str, now: float) -> float:
        """Take one token for ``name``: 0.0 when allowed, else the seconds until one is due."""
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate if self.rate > 0 else float("inf")


class Routes:
    """Handlers by path (exact) or path prefix, then by method."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefixes: list[tuple[str, dict[str, Handler]]] = []

    def add(self, method: str, path: str, handler: Handler, *, guarded: bool = False) -> None:
        """Serve ``method path`` with ``handler``; ``guarded``: it answers every failure
        itself (a hot path saving a frame), else unexpected errors become a JSON 500."""
        handler = handler if guarded else _guard(handler)
        self._exact.setdefault(path, {})[method] = handler
        if method == "GET":
            self._exact[path].setdefault("HEAD", handler)

    def add_prefix(
        self, method: str, prefix: str, handler: Handler, *, guarded: bool = False
    ) -> None:
        handler = handler if guarded else _guard(handler)
        for known, methods in self._prefixes:
            if known == prefix:
                methods[method] = handler
                return
        self._prefixes.append((prefix, {method: handler}))

    def find(self, method: str, path: str) -> Handler | int:
        """The handler, or 404 (no such path) or 405 (the path exists, not the method)."""
        methods = self._exact.get(path)
        if methods is None:
            for prefix, candidates in self._prefixes:
                if path.startswith(prefix):
                    methods = candidates
                    break
            else:
                return 404
        handler = methods.get(method)
        return 405 if handler is None else handler

    def allowed(self, path: str) -> list[str]:
        methods = self._exact.get(path)
        if methods is None:
            methods = next((m for p, m in self._prefixes if path.startswith(p)), {})
        return sorted(methods)


def internal_error(request: BaseRequest) -> web.Response:
    """The answer to an unexpected failure: logged with its traceback, never sent one."""
    log.exception("unexpected error while serving %s %s", request.method, request.path)
    return json_response(500, {"errorDetails": "internal error"})


def _guard(handler: Handler) -> Handler:
    async def guarded(request: BaseRequest) -> web.StreamResponse:
        try:
            return await handler(request)
        except (asyncio.CancelledError, web.HTTPException, ConnectionError):
            raise
        except Exception:
            return internal_error(request)

    return guarded


async def _ready(response: web.StreamResponse) -> web.StreamResponse:
    return response


NotFound = Callable[[BaseRequest, int], web.StreamResponse]


def _plain_miss(request: BaseRequest, status: int) -> web.StreamResponse:
    text = "not found" if status == 404 else f"{request.method} is not served here"
    return json_response(status, {"error": text})


class HttpServer:
    """One listening socket served by aiohttp's low-level server over ``routes``."""

    def __init__(
        self,
        routes: Routes,
        limits: HttpLimits | None = None,
        *,
        miss: NotFound | None = None,
        grace: float = 5.0,
    ) -> None:
        self.routes = routes
        self.grace = grace
        self.limits = limits or HttpLimits()
        self.port = 0
        self._miss = miss or _plain_miss
        self._runner: web.ServerRunner | None = None
        self._closing: list[Callable[[], None]] = []

    def _dispatch(self, request: BaseRequest) -> Awaitable[web.StreamResponse]:
        """The route's handler for ``request`` (its coroutine, not awaited here: one frame
        less per call), or an answer for a path or method nobody serves."""
        # raw_path is the request line's string; request.path would decode it through yarl.
        path = request.raw_path
        if "?" in path:
            path = path.partition("?")[0]
        found = self.routes.find(request.method, unquote(path) if "%" in path else path)
        if isinstance(found, int):
            response = self._miss(request, found)
            if found == 405:
                response.headers["Allow"] = ", ".join(self.routes.allowed(request.path))
            return _ready(response)
        return found(request)

    def _make_request(
        self,
        message: Any,
        payload: Any,
        protocol: Any,
        writer: Any,
        task: asyncio.Task[None],
    ) -> BaseRequest:
        # aiohttp's own cap on a chunked body, at the same number as the Content-Length check.
        return BaseRequest(
            message,
            payload,
            protocol,
            writer,
            task,
            asyncio.get_running_loop(),
            client_max_size=self.limits.max_body_bytes,
        )

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the server starts closing (event streams end then)."""
        self._closing.append(callback)

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> int:
        sock = _bind(host, port, reuse_port)
        server = web.Server(
            self._dispatch,
            # aiohttp's own factory when its cap (client_max_size) already is ours.
            request_factory=None
            if self.limits.max_body_bytes == _AIOHTTP_CAP
            else self._make_request,
            access_log=None,
            keepalive_timeout=self.limits.keepalive_timeout,
        )
        runner = web.ServerRunner(
            server, handle_signals=False, shutdown_timeout=max(self.grace, 0.1)
        )
        await runner.setup()
        site = web.SockSite(runner, sock, ssl_context=ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(sock.getsockname()[1])
        return self.port

    async def close(self) -> None:
        """Stop taking connections, end event streams, give in-flight calls ``grace``."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for callback in self._closing:
            callback()
        await runner.cleanup()


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound socket: SO_REUSEPORT lets ``serve --workers`` processes share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind HTTP port {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock
