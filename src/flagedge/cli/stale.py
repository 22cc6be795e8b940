"""``flagedge stale``: removal candidates (lifecycle.py's rules) from a file or from Redis,
with the edges' usage counts when Redis is given. Exit 1 with --fail when there are any."""

from __future__ import annotations

import argparse
import urllib.parse
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .. import config
from ..definitions import DefinitionLimits
from ..errors import DefinitionError, ExitCode, Refusal
from ..lifecycle import StaleReport, Usage, stale_report
from ..snapshot import Snapshot
from ..store.file import load_document
from ..store.plane import USAGE_RETENTION_DAYS
from ..store.usage import stale_inputs
from .common import out, settings
from .control import connect
from .remote import connect_remote, use_admin


def _from_file(path: Path, limits: DefinitionLimits) -> Snapshot:
    try:
        return Snapshot.build(load_document(path, limits.max_bytes), limits=limits)
    except DefinitionError as exc:
        raise Refusal(f"{path} is invalid", problems=exc.problems) from None


def _from_redis(resolved: config.Settings, today: date, days: int) -> tuple[Snapshot, Usage]:
    admin, _env = connect(resolved)
    try:
        return stale_inputs(admin, today, days, config.definition_limits(resolved))
    finally:
        admin.close()


def _today(text: str | None) -> date:
    if text is None:
        return datetime.now(UTC).date()  # usage days are UTC days
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Refusal(f"--today {text!r} is not a date (YYYY-MM-DD)") from None


def cmd_stale(args: argparse.Namespace) -> int:
    resolved = settings(args, [config.REDIS, config.DEFINITION_LIMITS, config.ADMIN_CLIENT])
    today = _today(args.today)
    days = args.days
    if not 1 <= days <= USAGE_RETENTION_DAYS:
        raise Refusal(f"--days must be 1 to {USAGE_RETENTION_DAYS} (usage is kept that long)")
    usage: Usage | None = None
    if args.flags is None and use_admin(resolved):
        remote = connect_remote(resolved)
        query = urllib.parse.urlencode({"days": days, "today": today.isoformat()})
        report = StaleReport.from_json(remote.call("GET", remote.env_path(f"/stale?{query}")))
        out(args, report.to_json(), "\n".join(report.lines()))
        return ExitCode.FAILED if report.candidates and args.fail else ExitCode.OK
    if args.flags is not None:
        snap, source = _from_file(args.flags, config.definition_limits(resolved)), str(args.flags)
    elif config.redis_url(resolved) or resolved["sentinel"]:
        snap, usage = _from_redis(resolved, today, days)
        source = f"env {resolved['env']!r}"
    else:
        raise Refusal("say where the definitions are: --flags FILE, or --redis URL --env NAME")
    flags = {key: flag.metadata for key, flag in snap.flags.items()}
    report = stale_report(flags, source, today, days, usage)
    out(args, report.to_json(), "\n".join(report.lines()))
    return ExitCode.FAILED if report.candidates and args.fail else ExitCode.OK


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "stale",
        help="list removal candidates: expired toggles, unused flags, flags stuck on a variant",
    )
    p.add_argument("--flags", type=Path, metavar="FILE", help="definitions file (age rules only)")
    config.add_options(p, [config.REDIS, config.DEFINITION_LIMITS, config.ADMIN_CLIENT])
    p.add_argument(
        "--days",
        type=int,
        default=30,
        help=f"usage window: no evaluations, or one variant, for this many days (1-"
        f"{USAGE_RETENTION_DAYS}; default 30)",
    )
    p.add_argument(
        "--today", metavar="YYYY-MM-DD", help="judge as of this date (default: today, UTC)"
    )
    p.add_argument("--fail", action="store_true", help="exit 1 when there is any candidate (CI)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_stale)
