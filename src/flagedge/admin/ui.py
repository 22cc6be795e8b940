"""The web UI: server-rendered pages (templates/, Jinja with autoescaping on: every flag key,
variant and value is text, never markup) and one small script (static/app.js) that posts
to the JSON API with the session's CSRF token.

    GET  /login, POST /login (form field ``token``) ─► session cookie (HttpOnly,
         SameSite=Strict, Secure under TLS); POST /logout
    GET  /envs/{env}/flags             every flag; filters by kind and text
    GET  /envs/{env}/flags/{flag}      variants, the rule in words, history; kill, restore,
                                       rollout, raw JSON editing, list forms, try a context
    GET  /envs/{env}/edges             live (server-sent events from the API)
    GET  /envs/{env}/audit, /stale

Pages never carry a secret: the token stays in the server's session table; the page gets
only the CSRF token of its own session.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import orjson
from aiohttp import web

from ..auth import Role
from ..errors import StoreUnavailable, Unauthenticated
from ..model import ToggleKind
from .api import flag_detail
from .service import SERVICE, Service, caller_of, environment_of
from .sessions import COOKIE, Caller

HERE = Path(__file__).parent
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(ms: int | float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(seconds: float) -> str:
    delta = max(0.0, time.time() - seconds)
    if delta < 60:
        return f"{delta:.0f} s ago"
    if delta < 3600:
        return f"{delta / 60:.0f} min ago"
    return f"{delta / 3600:.1f} h ago"


# A flag key is one path segment: "/" too is escaped (Jinja's urlencode keeps it).
_templates.filters["keypath"] = lambda key: quote(str(key), safe="")
_templates.filters["when"] = _when
_templates.filters["ago"] = _ago
_templates.filters["json"] = lambda v: orjson.dumps(v).decode()
_templates.filters["pretty"] = lambda v: orjson.dumps(
    v, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
).decode()


def render(
    request: web.Request,
    name: str,
    status: int = 200,
    caller: Caller | None = None,
    **values: Any,
) -> web.Response:
    service: Service = request.app[SERVICE]
    env = request.match_info.get("env") or next(iter(service.environments))
    page = _templates.get_template(name).render(
        caller=caller,
        csrf=service.identify.csrf(caller) if caller is not None else "",
        can_operate=caller is not None and caller.identity.has_role(Role.OPERATOR),
        can_edit=caller is not None and caller.identity.has_role(Role.EDITOR),
        envs=list(service.environments),
        env=env,
        path=request.path,
        **values,
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def _same_origin(request: web.Request) -> bool:
    """A browser's cross-site form post carries its own Origin: refuse it (login CSRF)."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


# -- login -----------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", error="")


async def login(request: web.Request) -> web.StreamResponse:
    service: Service = request.app[SERVICE]
    if not _same_origin(request):
        return render(request, "login.html", 403, error="cross-site login refused")
    form = await request.post()
    token = str(form.get("token", "")).strip()
    try:
        service.identify.token(token)  # a known token, or no session
    except Unauthenticated:
        return render(request, "login.html", 401, error="that token is not valid")
    session = service.sessions.create(token)
    response = web.HTTPSeeOther(f"/envs/{next(iter(service.environments))}/flags")
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(service.config.session_ttl),
        httponly=True,
        samesite="Strict",
        secure=service.tls,
        path="/",
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    service: Service = request.app[SERVICE]
    form = await request.post()
    session = service.sessions.get(request.cookies.get(COOKIE))
    if session is not None and service.identify.csrf_ok(
        Caller(service.identify.token(session.token), session, "session"),
        str(form.get("csrf", "")),
    ):
        service.sessions.end(session.id)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


async def home(request: web.Request) -> web.StreamResponse:
    service: Service = request.app[SERVICE]
    caller_of(request)
    raise web.HTTPSeeOther(f"/envs/{next(iter(service.environments))}/flags")


# -- pages -----------------------------------------------------------------------------------


async def _view_or_page(request: web.Request, caller: Caller) -> Any:
    env = environment_of(request)
    try:
        return await env.view()
    except StoreUnavailable as exc:
        return render(
            request,
            "error.html",
            503,
            caller,
            title="Redis is unreachable",
            message=f"{exc}. Nothing has been read from it yet, so there is nothing to show; "
            "writes are refused until it answers.",
        )


async def flags_page(request: web.Request) -> web.Response:
    caller = caller_of(request)
    view = await _view_or_page(request, caller)
    if isinstance(view, web.Response):
        return view
    kind = request.query.get("kind", "")
    text = request.query.get("q", "").strip()
    lowered = text.lower()
    rows = [
        r
        for r in view.rows
        if (not kind or r.kind == kind)
        and (not lowered or lowered in r.key.lower() or lowered in r.description.lower())
    ]
    return render(
        request,
        "flags.html",
        caller=caller,
        view=view,
        rows=rows,
        total=len(view.rows),
        kind=kind,
        q=text,
        kinds=[k.value for k in ToggleKind],
    )


async def flag_page(request: web.Request) -> web.Response:
    caller = caller_of(request)
    view = await _view_or_page(request, caller)
    if isinstance(view, web.Response):
        return view
    env = environment_of(request)
    key = request.match_info["flag"]
    try:
        detail = flag_detail(view, key)
    except web.HTTPNotFound:
        return render(
            request,
            "error.html",
            404,
            caller,
            title="No such flag",
            message=f"There is no flag named {key!r} in {env.name!r}.",
        )
    history: list[Any] = []
    history_error = ""
    try:
        history = await env.audit(20, key, None, None)
    except StoreUnavailable as exc:
        history_error = str(exc)
    definition = detail["definition"]
    variants = definition.get("variants") if isinstance(definition.get("variants"), dict) else {}
    return render(
        request,
        "flag.html",
        caller=caller,
        view=view,
        key=key,
        detail=detail,
        definition=definition,
        variants=variants,
        history=history,
        history_error=history_error,
        steps=[0, 5, 25, 50, 100],
    )


async def edges_page(request: web.Request) -> web.Response:
    caller = caller_of(request)
    env = environment_of(request)
    try:
        edges = await env.edges()
        error = ""
    except StoreUnavailable as exc:
        edges, error = {"version": None, "edges": [], "converged": False}, str(exc)
    return render(request, "edges.html", caller=caller, edges=edges, error=error)


async def audit_page(request: web.Request) -> web.Response:
    caller = caller_of(request)
    env = environment_of(request)
    q = request.query
    flag, actor, action = q.get("flag", ""), q.get("actor", ""), q.get("action", "")
    try:
        entries = await env.audit(200, flag or None, actor or None, action or None)
        error = ""
    except StoreUnavailable as exc:
        entries, error = [], str(exc)
    return render(
        request,
        "audit.html",
        caller=caller,
        entries=entries,
        error=error,
        flag=flag,
        actor=actor,
        action=action,
        actions=["push", "kill", "restore", "rollout", "edit", "edit-lists"],
    )


async def stale_page(request: web.Request) -> web.Response:
    caller = caller_of(request)
    env = environment_of(request)
    try:
        days = max(1, min(45, int(request.query.get("days", "30"))))
    except ValueError:
        days = 30
    try:
        report = await env.stale_report(None, days)
        error = ""
    except StoreUnavailable as exc:
        report, error = None, str(exc)
    return render(request, "stale.html", caller=caller, report=report, error=error, days=days)


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    caller = request.get("flagedge.caller")
    return render(request, "error.html", status, caller, title=title, message=message)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", home)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/envs/{env}/flags", flags_page)
    r.add_get("/envs/{env}/flags/{flag}", flag_page)
    r.add_get("/envs/{env}/edges", edges_page)
    r.add_get("/envs/{env}/audit", audit_page)
    r.add_get("/envs/{env}/stale", stale_page)
    r.add_static("/static/", HERE / "static", append_version=False)
    r.add_get("/api/v1/openapi.json", openapi)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(
        body=(HERE / "openapi.json").read_bytes(), content_type="application/json", charset="utf-8"
    )
