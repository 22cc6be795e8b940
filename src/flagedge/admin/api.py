"""The JSON API under /api/v1/ (described, route by route, in openapi.json beside this file;
tests/test_admin_api.py keeps the two equal).

Every handler: who is calling (Caller), the role the call needs, the environment, then one
call into state.Environment (reads) or store/writes.py (writes, with the caller's name as
the audit's actor). Errors become JSON ``{"ok": false, "error", "problems": [{path,
message}]}`` with the status that says why, in one place (app.py's middleware).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import date
from typing import Any

import orjson
from aiohttp import web

from ..auth import Role
from ..errors import PermissionDenied, Problem, Refusal
from ..explain import explain, outline
from ..rulelists import ListEdit, edit_lists, list_operands
from ..snapshot import Snapshot
from ..store import writes
from ..store.plane import RawState
from .diff import unified
from .service import SERVICE, Service, caller_of, environment_of
from .state import Environment

MAX_AUDIT = 1000


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", charset="utf-8"
    )


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refusal("the request body is not JSON", problems=(Problem("", str(exc)),)) from None
    if not isinstance(body, dict):
        raise Refusal("the request body is a JSON object")
    return body


def _version(body: dict[str, Any], required: bool) -> int | None:
    value = body.get("version")
    if value is None:
        if required:
            raise Refusal(
                "say which version you edited",
                problems=(Problem("version", "required: the version you read the flag at"),),
            )
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Refusal("bad version", problems=(Problem("version", "a version number"),))
    return value


def _need(request: web.Request, role: Role) -> str:
    """The caller's name, if it has ``role`` (PermissionDenied, 403, if not). A write by a
    browser session must also carry its CSRF token."""
    caller = caller_of(request)
    if not caller.identity.has_role(role):
        raise PermissionDenied(f"{caller.identity.name} lacks the {role} role")
    if role is not Role.VIEWER:
        service: Service = request.app[SERVICE]
        if not service.identify.csrf_ok(caller, request.headers.get("X-CSRF-Token")):
            raise web.HTTPForbidden(
                body=orjson.dumps(
                    {"ok": False, "error": "missing or wrong CSRF token: reload the page"}
                ),
                content_type="application/json",
            )
    return caller.identity.name


def _done(env: str, done: writes.Outcome, noop: str) -> dict[str, Any]:
    if done is None:
        return {"ok": True, "changed": False, "env": env, "message": noop}
    plan, result = done.plan, done.result
    answer: dict[str, Any] = {
        "ok": True,
        "changed": True,
        "env": env,
        "version": result.version,
        "written_ms": result.ts_ms,
        "action": plan.write.action,
        "flag": plan.write.flag or None,
        "summary": plan.summary,
    }
    if done.ignored:  # heartbeats claiming versions beyond reason: left out of the floor
        answer["redis_version"] = plan.write.expected
        answer["ignored_edges"] = [{"id": e.id, "version": e.version} for e in done.ignored]
    return answer


# -- reads -----------------------------------------------------------------------------------


async def whoami(request: web.Request) -> web.Response:
    caller = caller_of(request)
    service: Service = request.app[SERVICE]
    return json_response(
        {
            "name": caller.identity.name,
            "roles": sorted(r.value for r in caller.identity.roles),
            "via": caller.via,
            "envs": list(service.environments),
        }
    )


async def list_envs(request: web.Request) -> web.Response:
    caller_of(request)
    service: Service = request.app[SERVICE]
    return json_response({"envs": list(service.environments)})


async def list_flags(request: web.Request) -> web.Response:
    caller_of(request)
    env = environment_of(request)
    view = await env.view()
    kind = request.query.get("kind", "")
    text = request.query.get("q", "").lower()
    rows = [
        r.to_json()
        for r in view.rows
        if (not kind or r.kind == kind)
        and (not text or text in r.key.lower() or text in r.description.lower())
    ]
    return json_response(
        {
            "env": env.name,
            "version": view.version,
            "stale": view.stale,
            "error": view.error,
            "problems": list(view.problems),
            "flags": rows,
        }
    )


def flag_detail(view: Any, key: str) -> dict[str, Any]:
    definition = view.flag(key)
    if definition is None:
        raise web.HTTPNotFound(
            body=orjson.dumps({"ok": False, "error": f"no flag named {key!r}"}),
            content_type="application/json",
        )
    ov = view.override(key)
    return {
        "key": key,
        "version": view.version,
        "stale": view.stale,
        "definition": definition,
        "override": None if ov is None else ov.to_json(),
        "rule": outline(definition.get("targeting")) if definition.get("targeting") else [],
        "lists": [o.to_json() for o in list_operands(definition)],
    }


async def get_flag(request: web.Request) -> web.Response:
    caller_of(request)
    env = environment_of(request)
    view = await env.view()
    return json_response({"env": env.name, **flag_detail(view, request.match_info["flag"])})


async def get_definitions(request: web.Request) -> web.Response:
    caller_of(request)
    env = environment_of(request)
    view = await env.view()
    overrides = {}
    for key in view.raw.overrides:
        ov = view.override(key)
        overrides[key] = None if ov is None else ov.to_json()
    return json_response(
        {
            "env": env.name,
            "version": view.version,
            "stale": view.stale,
            "definitions": view.document if view.raw.definitions is not None else None,
            "overrides": overrides,
        }
    )


async def get_edges(request: web.Request) -> web.Response:
    caller_of(request)
    env = environment_of(request)
    return json_response(await env.edges())


async def edges_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``edges`` event per change of the edge rows."""
    caller_of(request)
    env = environment_of(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    service: Service = request.app[SERVICE]
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        async with env.feed.listen() as queue:
            while not service.closing:
                try:
                    async with asyncio.timeout(15):
                        body = await queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(b"event: edges\ndata: " + orjson.dumps(body) + b"\n\n")
    return response


async def get_audit(request: web.Request) -> web.Response:
    caller_of(request)
    env = environment_of(request)
    try:
        limit = max(1, min(MAX_AUDIT, int(request.query.get("limit", "100"))))
    except ValueError:
        raise Refusal("limit is a number", problems=(Problem("limit", "1-1000"),)) from None
    q = request.query
    entries = await env.audit(
        limit, q.get("flag") or None, q.get("actor") or None, q.get("action") or None
    )
    return json_response({"env": env.name, "entries": [e.to_json() for e in entries]})


async def get_stale(request: web.Request) -> web.Response:
    caller_of(request)
    env = environment_of(request)
    try:
        days = int(request.query.get("days", "30"))
        today = date.fromisoformat(request.query["today"]) if "today" in request.query else None
    except ValueError:
        raise Refusal("days is a number and today a date (YYYY-MM-DD)") from None
    if not 1 <= days <= 45:
        raise Refusal("days must be 1 to 45", problems=(Problem("days", "1-45"),))
    report = await env.stale_report(today, days)
    return json_response(report.to_json())


async def explain_flag(request: web.Request) -> web.Response:
    caller_of(request)
    env = environment_of(request)
    body = await read_json(request)
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise Refusal("the context is a JSON object", problems=(Problem("context", "an object"),))
    view = await env.view()
    key = request.match_info["flag"]
    if view.snapshot is None:
        raise Refusal("the definitions in Redis do not build", problems=())
    now = body.get("now")  # a fixed clock (unix seconds) for reproducing an answer
    when = now if isinstance(now, int) and not isinstance(now, bool) else int(time.time())
    got = explain(view.snapshot, key, context, when)
    return json_response({"env": env.name, "version": view.version, **got.to_json()})


# -- checks before writing -------------------------------------------------------------------


def _problems(exc: Refusal) -> list[dict[str, str]]:
    return [{"path": p.path, "message": p.message} for p in exc.problems]


def _check(raw: RawState, key: str, definition: Any) -> tuple[Snapshot | None, list[Any]]:
    """The state with ``definition`` in place of flag ``key``, through the real engine."""
    plan = writes.plan_definition(raw, key, definition, "edit", "preview", 0)
    if plan is None:
        return None, []
    try:
        return writes.validate(plan), []
    except Refusal as exc:
        return None, _problems(exc)


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


async def validate_flag(request: web.Request) -> web.Response:
    """Validate an edited definition and show its diff; writes nothing."""
    caller_of(request)
    env = environment_of(request)
    body = await read_json(request)
    view = await env.view()
    key = request.match_info["flag"]
    current = flag_detail(view, key)["definition"]
    if "edits" in body:
        try:
            definition: Any = edit_lists(current, _list_edits(body))
        except Exception as exc:
            problems = list(getattr(exc, "problems", ()))
            return json_response(
                {
                    "ok": False,
                    "valid": False,
                    "problems": [{"path": p.path, "message": p.message} for p in problems],
                    "diff": "",
                }
            )
    else:
        definition = body.get("definition")
    try:
        _snap, problems = await asyncio.to_thread(_check, view.raw, key, definition)
    except Refusal as exc:
        problems = _problems(exc) or [{"path": "", "message": str(exc)}]
    return json_response(
        {
            "ok": not problems,
            "valid": not problems,
            "version": view.version,
            "problems": problems,
            "diff": unified(_pretty(current), _pretty(definition), key),
            "definition": definition,
        }
    )


def _list_edits(body: dict[str, Any]) -> list[ListEdit]:
    edits = body.get("edits")
    if not isinstance(edits, list):
        raise Refusal("edits is a list", problems=(Problem("edits", "a list of edits"),))
    out = []
    for i, e in enumerate(edits):
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise Refusal("bad edit", problems=(Problem(f"edits[{i}]", "{path, add, remove}"),))
        add, remove = e.get("add", []), e.get("remove", [])
        if not isinstance(add, list) or not isinstance(remove, list):
            raise Refusal("bad edit", problems=(Problem(f"edits[{i}]", "add/remove are lists"),))
        out.append(ListEdit(e["path"], tuple(add), tuple(remove)))
    return out


# -- writes ----------------------------------------------------------------------------------


async def _write_request(
    request: web.Request, role: Role
) -> tuple[str, Environment, dict[str, Any]]:
    """A write's caller name (who must have ``role``), environment and JSON body."""
    actor = _need(request, role)
    return actor, environment_of(request), await read_json(request)


async def kill(request: web.Request) -> web.Response:
    actor, env, body = await _write_request(request, Role.OPERATOR)
    variant = body.get("variant") or None
    if variant is not None and not isinstance(variant, str):
        raise Refusal("variant is a name", problems=(Problem("variant", "a variant name"),))
    key = request.match_info["flag"]
    done = await env.write(writes.kill, key, variant, actor, expected=_version(body, False))
    return json_response(_done(env.name, done, ""))


async def restore(request: web.Request) -> web.Response:
    actor, env, body = await _write_request(request, Role.OPERATOR)
    key = request.match_info["flag"]
    done = await env.write(writes.restore, key, actor, expected=_version(body, False))
    return json_response(_done(env.name, done, f"{key} has no override; nothing to restore"))


async def rollout(request: web.Request) -> web.Response:
    actor, env, body = await _write_request(request, Role.OPERATOR)
    percent = body.get("percent")
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise Refusal("percent is a number", problems=(Problem("percent", "0 to 100"),))
    variant = body.get("variant") or None
    key = request.match_info["flag"]
    done = await env.write(
        writes.rollout, key, float(percent), variant, actor, expected=_version(body, False)
    )
    return json_response(_done(env.name, done, ""))


async def edit_flag(request: web.Request) -> web.Response:
    actor, env, body = await _write_request(request, Role.EDITOR)
    if "definition" not in body:
        raise Refusal("no definition", problems=(Problem("definition", "required"),))
    key = request.match_info["flag"]
    done = await env.write(
        writes.edit, key, body["definition"], actor, expected=_version(body, True)
    )
    return json_response(_done(env.name, done, f"{key} unchanged; nothing written"))


async def edit_lists_(request: web.Request) -> web.Response:
    actor, env, body = await _write_request(request, Role.EDITOR)
    key = request.match_info["flag"]
    done = await env.write(
        writes.edit_flag_lists, key, _list_edits(body), actor, expected=_version(body, True)
    )
    return json_response(_done(env.name, done, f"{key} unchanged; nothing written"))


async def push(request: web.Request) -> web.Response:
    actor, env, body = await _write_request(request, Role.EDITOR)
    if "definitions" not in body:
        raise Refusal("no definitions", problems=(Problem("definitions", "required"),))
    done = await env.write(
        writes.push,
        body["definitions"],
        actor,
        force=bool(body.get("force")),
        source=str(body.get("source") or "the definitions"),
        expected=_version(body, False),
    )
    return json_response(_done(env.name, done, "definitions unchanged; nothing written"))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/whoami", whoami)
    r.add_get("/api/v1/envs", list_envs)
    r.add_get("/api/v1/envs/{env}/flags", list_flags)
    r.add_get("/api/v1/envs/{env}/flags/{flag}", get_flag)
    r.add_put("/api/v1/envs/{env}/flags/{flag}", edit_flag)
    r.add_post("/api/v1/envs/{env}/flags/{flag}/kill", kill)
    r.add_post("/api/v1/envs/{env}/flags/{flag}/restore", restore)
    r.add_post("/api/v1/envs/{env}/flags/{flag}/rollout", rollout)
    r.add_post("/api/v1/envs/{env}/flags/{flag}/lists", edit_lists_)
    r.add_post("/api/v1/envs/{env}/flags/{flag}/validate", validate_flag)
    r.add_post("/api/v1/envs/{env}/flags/{flag}/explain", explain_flag)
    r.add_get("/api/v1/envs/{env}/definitions", get_definitions)
    r.add_put("/api/v1/envs/{env}/definitions", push)
    r.add_get("/api/v1/envs/{env}/edges", get_edges)
    r.add_get("/api/v1/envs/{env}/edges/stream", edges_stream)
    r.add_get("/api/v1/envs/{env}/audit", get_audit)
    r.add_get("/api/v1/envs/{env}/stale", get_stale)
