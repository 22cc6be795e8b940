"""``flagedge admin``: the control plane for people (src/flagedge/admin/), and
``flagedge explain``: why a flag answers what it does, from a file or from Redis."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import orjson

from .. import config, logs
from ..errors import DefinitionError, Refusal
from ..explain import explain
from ..serve.loop import run as run_loop
from ..snapshot import Snapshot
from ..store.file import load_document
from ..store.plane import build_snapshot
from .common import out, settings
from .remote import use_admin

GROUPS = [config.ADMIN, config.REDIS_CONNECTION, config.ADMIN_SECURITY, config.LOGGING]


def cmd_admin(args: argparse.Namespace) -> int:
    from ..admin.service import AdminConfig, serve

    cfg = AdminConfig.from_settings(settings(args, GROUPS))
    logs.setup(cfg.log_level, cfg.log_format)
    run_loop(serve(cfg))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        context = orjson.loads(args.context)
    except orjson.JSONDecodeError as exc:
        raise Refusal("--context is not JSON", problems=()) from exc
    if not isinstance(context, dict):
        raise Refusal("--context is a JSON object")
    resolved = settings(args, [config.REDIS, config.ADMIN_CLIENT, config.DEFINITIONS])
    now = args.now if args.now is not None else int(time.time())
    if args.flags is None and use_admin(resolved):
        from .remote import connect_remote

        remote = connect_remote(resolved)
        body = remote.explain(args.flag, context, now)
        text = "\n".join(_lines_of(body))
        out(args, body, text)
        return 0
    snap = _snapshot(args, resolved)
    got = explain(snap, args.flag, context, now)
    out(args, got.to_json(), "\n".join(got.lines()))
    return 0


def _lines_of(body: dict[str, Any]) -> list[str]:
    value = orjson.dumps(body["value"]).decode() if body["variant"] is not None else "(default)"
    lines = [
        f"{body['key']}: {value}, variant {body['variant'] or '-'}, reason {body['reason']}",
        f"  because {body['summary']}",
    ]
    for s in body["steps"]:
        mark = "MATCHED" if s["result"] else "no"
        lines.append(f"  {mark:>7}  {s['condition']}  (at {s['path']}; then {s['then']})")
    for b in body["buckets"]:
        if b["bucket"] is None:
            lines.append(f"  bucketing by {b['by']}: no bucket")
        else:
            ranges = ", ".join(f"{x['variant']} [{x['from']}, {x['to']})" for x in b["boundaries"])
            lines.append(
                f"  bucketing by {b['by']}: bucket {b['bucket']} of {b['total']} -> "
                f"{b['chosen']} ({ranges})"
            )
    return lines


def _snapshot(args: argparse.Namespace, resolved: config.Settings) -> Snapshot:
    if args.flags is not None:
        try:
            return Snapshot.build(load_document(args.flags), fractional=resolved["fractional"])
        except DefinitionError as exc:
            raise Refusal(f"{args.flags} is invalid", problems=exc.problems) from None
    if config.redis_url(resolved) or resolved["sentinel"]:
        from .control import connect

        admin, _env = connect(resolved)
        try:
            raw = admin.read()
        finally:
            admin.close()
        try:
            return build_snapshot(raw)
        except DefinitionError as exc:
            raise Refusal("the state in Redis does not build", problems=exc.problems) from None
    raise Refusal(
        "say where the definitions are: --flags FILE, --redis URL --env NAME, or --admin URL"
    )


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "admin",
        help="the admin service: HTTP API and web UI for flags, kill switches, rollouts, "
        "permission lists, edges and audit",
        description="Serve the admin API (/api/v1/, OpenAPI at /api/v1/openapi.json) and the "
        "web UI for one or more environments of a Redis control plane. Needs an auth file "
        "whose tokens have roles (viewer, operator, editor).",
    )
    config.add_options(p, GROUPS)
    p.set_defaults(func=cmd_admin)

    p = sub.add_parser(
        "explain",
        help="why a flag answers what it does for a context: the condition that matched, "
        "the bucket of a fractional split",
    )
    p.add_argument("flag", help="the flag key")
    p.add_argument("--context", default="{}", help="the evaluation context, JSON (default {})")
    p.add_argument(
        "--flags", type=Path, metavar="FILE", help="definitions file (default: Redis, if given)"
    )
    p.add_argument("--now", type=int, help="unix seconds to evaluate at (default: now)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    config.add_options(p, [config.REDIS, config.ADMIN_CLIENT, config.DEFINITIONS])
    p.set_defaults(func=cmd_explain)
