"""The admin process: settings, the aiohttp application, and the one place errors become
HTTP answers.

    AdminConfig (settings) ─► Service(environments, security, sessions) ─► make_app()
        middlewares: security headers (CSP, no inline script or style) ─► errors ─► handlers
        api.py   /api/v1/...        JSON for programs and the CLI (--admin URL)
        ui.py    /, /login, /envs/…  server-rendered pages, /static/ (shipped in the package)
    run(config)   on serve/loop.py's event loop, TLS from serve/security.py

The edges never talk to this process: it reads and writes Redis as the ops CLI does,
through store/writes.py, so edges need no write credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from .. import config
from ..errors import (
    ConfigError,
    Conflict,
    DefinitionError,
    PermissionDenied,
    Refusal,
    StoreUnavailable,
    Unauthenticated,
)
from ..logs import event
from ..serve.config import SecurityConfig, check_files, tls_paths
from ..serve.security import Security
from ..store.redis import RedisAdmin, parse_target
from ..tasks import stop_task
from .sessions import COOKIE, Caller, Identify, Sessions
from .state import Environment

log = logging.getLogger("flagedge.admin")

SERVICE: web.AppKey[Service] = web.AppKey("service")
CALLER: str = "flagedge.caller"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    host: str
    port: int
    envs: tuple[str, ...]
    redis: str | None
    sentinel: str | None
    sentinel_master: str | None
    sentinel_password: str | None
    security: SecurityConfig
    trusted_user_header: str | None
    trusted_proxies: tuple[str, ...]
    session_ttl: float
    max_body: int
    log_level: str = "info"
    log_format: str = "json"

    @classmethod
    def from_settings(cls, s: config.Settings) -> AdminConfig:
        envs = tuple(dict.fromkeys(s["env"] or ()))
        if not envs:
            raise ConfigError("no environment given: --env NAME (repeatable) or FLAGEDGE_ENV")
        redis = config.redis_url(s)
        if not redis and not s["sentinel"]:
            raise ConfigError("no Redis given: --redis URL, --redis-url-file or FLAGEDGE_REDIS_URL")
        if not s["auth_file"]:
            raise ConfigError(
                "the admin service needs --auth-file (tokens with roles: `flagedge token new "
                "--role operator`); without one anyone could kill a flag"
            )
        proxies = tuple(s["trusted_proxy"] or ())
        for p in proxies:
            try:
                ipaddress.ip_address(p)
            except ValueError:
                raise ConfigError(f"--trusted-proxy {p!r} is not an IP address") from None
        if proxies and not s["trusted_user_header"]:
            raise ConfigError("--trusted-proxy needs --trusted-user-header")
        cert, key, ca = tls_paths(s)
        check_files(s)
        return cls(
            host=s["host"],
            port=s["port"],
            envs=envs,
            redis=redis,
            sentinel=s["sentinel"],
            sentinel_master=s["sentinel_master"],
            sentinel_password=s["sentinel_password"],
            security=SecurityConfig(
                server_cert_path=cert,
                server_key_path=key,
                client_ca_path=ca,
                auth_file=s["auth_file"],
            ),
            trusted_user_header=s["trusted_user_header"],
            trusted_proxies=proxies,
            session_ttl=s["session_ttl"],
            max_body=s["max_body"],
            log_level=s.get("log_level") or "info",
            log_format=s.get("log_format") or "json",
        )


class Service:
    """Everything the handlers share."""

    def __init__(self, cfg: AdminConfig) -> None:
        self.config = cfg
        try:
            target = parse_target(
                cfg.redis or "",
                cfg.sentinel,
                cfg.sentinel_master,
                sentinel_password=cfg.sentinel_password,
            )
        except ValueError as exc:
            raise ConfigError(f"bad Redis address: {exc}") from None
        try:
            self.security = Security(cfg.security)
        except DefinitionError as exc:
            raise ConfigError("the auth file is invalid", problems=exc.problems) from None
        self.environments = {name: Environment(name, RedisAdmin(target, name)) for name in cfg.envs}
        self.sessions = Sessions(cfg.session_ttl)
        self.identify = Identify(
            self.security,
            self.sessions,
            cfg.trusted_user_header,
            frozenset(cfg.trusted_proxies),
        )
        self.tls = cfg.security.tls
        self.closing = False
        self.started = time.time()

    def close(self) -> None:
        for env in self.environments.values():
            env.close()


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller (Unauthenticated, 401, if there is none)."""
    caller = request.get(CALLER)
    if caller is None:
        service: Service = request.app[SERVICE]
        headers = {k.lower(): v for k, v in request.headers.items()}
        caller = service.identify.caller(
            request.headers.get("Authorization"),
            request.cookies.get(COOKIE),
            request.remote,
            headers,
        )
        request[CALLER] = caller
    assert isinstance(caller, Caller)
    return caller


def environment_of(request: web.Request) -> Environment:
    service: Service = request.app[SERVICE]
    name = request.match_info.get("env", "")
    env = service.environments.get(name)
    if env is None:
        raise web.HTTPNotFound(
            body=orjson.dumps(
                {
                    "ok": False,
                    "error": f"no environment {name!r} (managed: "
                    f"{', '.join(service.environments)})",
                }
            ),
            content_type="application/json",
        )
    return env


# -- middlewares -----------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" on form
    # posts, and the login's cross-site check needs the real one.
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    service: Service = request.app[SERVICE]
    if service.tls:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _error(status: int, message: str, problems: Any = (), **extra: Any) -> web.Response:
    body = {
        "ok": False,
        "error": message,
        "problems": [{"path": p.path, "message": p.message} for p in problems],
        **extra,
    }
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", charset="utf-8"
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure, as JSON with its status (the UI's pages render their own)."""
    api = request.path.startswith("/api/")
    try:
        return await handler(request)
    except Unauthenticated:
        if not api:
            raise web.HTTPSeeOther("/login") from None
        return _error(401, "log in: an API token (Authorization: Bearer TOKEN) or a session")
    except PermissionDenied as exc:
        return _error(403, str(exc) or "permission denied")
    except Conflict as exc:
        return _error(409, str(exc), exc.problems, conflict=True)
    except StoreUnavailable as exc:
        return _error(503, f"Redis is unreachable, so nothing was written: {exc}", redis=False)
    except Refusal as exc:
        return _error(400 if exc.code != 1 else 409, str(exc), exc.problems)
    except DefinitionError as exc:
        return _error(400, "invalid input", exc.problems)
    except web.HTTPRequestEntityTooLarge:
        service: Service = request.app[SERVICE]
        limit = service.config.max_body
        return _error(413, f"the request body is too large (the limit is {limit} bytes)")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("admin request failed: %s %s", request.method, request.path)
        if not api:
            from .ui import error_page

            with contextlib.suppress(Exception):
                return error_page(request, 500, "Something went wrong", "See the service's log.")
        return _error(500, "internal error; the service keeps serving (see its log)")


def make_app(service: Service) -> web.Application:
    from . import api, ui

    app = web.Application(
        middlewares=[headers_middleware, errors_middleware],
        client_max_size=service.config.max_body,
    )
    app[SERVICE] = service
    api.add_routes(app)
    ui.add_routes(app)
    return app


async def serve(cfg: AdminConfig, ready: Callable[[str, int], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    service = Service(cfg)
    app = make_app(service)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, ssl_context=service.security.ssl_context())
    await site.start()
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else cfg.port
    scheme = "https" if service.tls else "http"
    event(
        log,
        logging.INFO,
        "admin",
        "admin service on %s://%s:%d for env(s) %s",
        scheme,
        cfg.host,
        port,
        ", ".join(cfg.envs),
        host=cfg.host,
        port=port,
        envs=list(cfg.envs),
    )
    if ready is not None:
        ready(cfg.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(service.security.run())
    try:
        await stop.wait()
    finally:
        service.closing = True
        await stop_task(watcher)
        await runner.cleanup()
        service.close()
