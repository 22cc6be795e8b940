"""The ops commands for the Redis control plane: push, kill, restore, rollout (writes, through
store/writes.py, the one write path) and get, status, audit (reads).

Every command takes the Redis connection settings (config.REDIS) and --json; the writes
also take --actor (config.WRITES), the definition limits they validate with
(config.DEFINITION_LIMITS) and --wait/--timeout. Exit codes are errors.ExitCode: 1 not
converged in time (or the version kept moving, or no edge reports at all), 2 invalid input,
3 Redis unreachable.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .. import config
from ..definitions import DefinitionLimits
from ..errors import ConfigError, ExitCode
from ..store import writes
from ..store.file import load_document
from ..store.redis import RedisAdmin, parse_target
from .common import out, settings

Outcome = writes.Done | None


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def connect(resolved: config.Settings) -> tuple[RedisAdmin, str]:
    """The admin connection and environment the settings name; ConfigError if they do not."""
    url = config.redis_url(resolved)
    if not url and not resolved["sentinel"]:
        raise ConfigError(
            "no Redis given: FLAGEDGE_REDIS_URL, --redis-url-file FILE or --redis URL"
        )
    env = resolved["env"]
    if not env:
        raise ConfigError("no environment given: --env NAME or FLAGEDGE_ENV")
    try:
        target = parse_target(
            url or "",
            resolved["sentinel"],
            resolved["sentinel_master"],
            sentinel_password=resolved["sentinel_password"],
        )
    except ValueError as exc:
        raise ConfigError(f"bad Redis address: {exc}") from None
    return RedisAdmin(target, env), env


def _actor(args: argparse.Namespace) -> str:
    return str(settings(args, [config.WRITES])["actor"] or default_actor())


def _limits(args: argparse.Namespace) -> DefinitionLimits:
    return config.definition_limits(settings(args, [config.DEFINITION_LIMITS]))


def _report(args: argparse.Namespace, admin: RedisAdmin, env: str, done: Outcome, noop: str) -> int:
    """Print what a write did (and, with --wait, each edge applying it)."""
    if done is None:
        out(args, {"ok": True, "changed": False, "message": noop}, noop)
        return ExitCode.OK
    plan, result = done.plan, done.result
    body: dict[str, Any] = {
        "ok": True,
        "changed": True,
        "env": env,
        "version": result.version,
        "action": plan.write.action,
        "flag": plan.write.flag or None,
        "summary": plan.summary,
    }
    text = f"{plan.summary} in env {env!r}: version {result.version}"
    code = ExitCode.OK
    if done.ignored:
        note = writes.ignored_note(done.ignored, plan.write.expected)
        body["ignored_edges"] = [{"id": e.id, "version": e.version} for e in done.ignored]
        print(f"flagedge: warning: {note}", file=sys.stderr)
    if args.wait:
        converged, edges = writes.wait_edges(admin, result.version, args.timeout)
        current = admin.version()
        written = result.ts_ms / 1000
        body["converged"] = converged
        body["edges"] = [
            {
                "id": e.id,
                "version": e.version,
                "applied_ms": round((e.applied_at - written) * 1000, 3)
                if writes.applied(e, result.version, current)
                else None,
            }
            for e in edges
        ]
        lines = [text]
        for e in edges:
            if writes.applied(e, result.version, current):
                took = (e.applied_at - written) * 1000
                later = "" if e.version == result.version else f" (now at {e.version})"
                lines.append(f"  {e.id}: applied in {took:.1f} ms{later}")
            elif e.version > current:
                lines.append(
                    f"  {e.id}: NOT applied: reports version {e.version}, which Redis "
                    f"(at {current}) never held"
                )
            else:
                lines.append(f"  {e.id}: still at version {e.version}")
        if not edges:
            lines.append(f"  no edge reports for env {env!r}: nothing applied it")
        if not converged:
            if edges:
                lines.append(f"not every edge applied it within {args.timeout:g} s")
            code = ExitCode.FAILED
        text = "\n".join(lines)
    out(args, body, text)
    return code


def cmd_push(args: argparse.Namespace, admin: RedisAdmin, env: str) -> int:
    limits = _limits(args)
    done = writes.push(
        admin,
        load_document(args.file, limits.max_bytes),
        _actor(args),
        force=args.force,
        source=str(args.file),
        limits=limits,
    )
    return _report(args, admin, env, done, "definitions unchanged; nothing written")


def cmd_kill(args: argparse.Namespace, admin: RedisAdmin, env: str) -> int:
    done = writes.kill(admin, args.flag, args.variant, _actor(args), _limits(args))
    return _report(args, admin, env, done, "")


def cmd_restore(args: argparse.Namespace, admin: RedisAdmin, env: str) -> int:
    done = writes.restore(admin, args.flag, _actor(args), _limits(args))
    return _report(args, admin, env, done, f"{args.flag} has no override; nothing to restore")


def cmd_rollout(args: argparse.Namespace, admin: RedisAdmin, env: str) -> int:
    done = writes.rollout(admin, args.flag, args.percent, args.variant, _actor(args), _limits(args))
    return _report(args, admin, env, done, "")


def cmd_get(args: argparse.Namespace, admin: RedisAdmin, env: str) -> int:
    raw = admin.read()
    doc = writes.document_of(raw)
    flags = doc.get("flags") if isinstance(doc.get("flags"), dict) else {}
    assert isinstance(flags, dict)
    keys = [args.flag] if args.flag else list(flags)
    if args.flag:
        writes.flag_definition(doc, args.flag)
    body: dict[str, Any] = {"env": env, "version": raw.version, "flags": {}}
    lines = [f"env {env!r} at version {raw.version}, {len(flags)} flag(s)"]
    for key in keys:
        definition = flags.get(key)
        ov_raw = raw.overrides.get(key)
        try:
            override = None if ov_raw is None else orjson.loads(ov_raw)
        except orjson.JSONDecodeError:
            override = {"corrupt": ov_raw.decode("utf-8", "replace") if ov_raw else ""}
        body["flags"][key] = {"definition": definition, "override": override}
        if args.flag:
            lines.append(orjson.dumps(definition, option=orjson.OPT_INDENT_2).decode())
        else:
            state = definition.get("state") if isinstance(definition, dict) else "?"
            default = definition.get("defaultVariant") if isinstance(definition, dict) else "?"
            lines.append(f"  {key}: {state}, default {default}")
        if override is not None:
            lines.append(
                f"  {'' if args.flag else '  '}override: {orjson.dumps(override).decode()}"
            )
    out(args, body, "\n".join(lines))
    return ExitCode.OK


def cmd_status(args: argparse.Namespace, admin: RedisAdmin, env: str) -> int:
    import time

    deadline = time.monotonic() + args.timeout
    while True:
        version = admin.version()
        rows = writes.edge_rows(version, admin.edges())
        # No edge reporting is no convergence (a typo in --env looks just like it).
        converged = bool(rows) and all(r["converged"] for r in rows)
        if converged or not args.wait or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if rows:
        verdict = "all converged" if converged else "NOT converged"
        head = f"env {env!r}: Redis at version {version}, {len(rows)} live edge(s), {verdict}"
    else:
        head = f"env {env!r}: Redis at version {version}; no edge reports for env {env!r}"
    lines = [head]
    for r in rows:
        state = (
            "converged"
            if r["converged"]
            else "far beyond any version Redis held (writes do not believe it)"
            if r["beyond_reason"]
            else "ahead of Redis (Redis lost state: push to re-seed)"
            if r["ahead_of_redis"]
            else f"{r['behind']} behind"
        )
        flags = " STALE" if r["stale"] else ""
        error = f" error: {r['error']}" if r["error"] else ""
        lines.append(f"  {r['id']}: version {r['version']}, {state}{flags}{error}")
    out(
        args,
        {"env": env, "version": version, "converged": converged, "edges": rows},
        "\n".join(lines),
    )
    return ExitCode.OK if converged else ExitCode.FAILED


def cmd_audit(args: argparse.Namespace, admin: RedisAdmin, env: str) -> int:
    entries = admin.audit(args.limit, args.flag)
    lines = []
    for e in entries:
        when = datetime.fromtimestamp(e.ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        what = f"{e.before or '-'} -> {e.after or '-'}"
        lines.append(f"{when[:-4]}Z v{e.version} {e.actor} {e.action} {e.flag or '-'} {what}")
    out(
        args,
        {"env": env, "entries": [e.to_json() for e in entries]},
        "\n".join(lines) if lines else "no audit entries",
    )
    return ExitCode.OK


# -- argparse ------------------------------------------------------------------------------

Command = Callable[[argparse.Namespace, RedisAdmin, str], int]


def _run(command: Command, groups: list[config.Group]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        admin, env = connect(settings(args, groups))
        try:
            return command(args, admin, env)
        finally:
            admin.close()

    return run


def _percent(text: str) -> float:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None


def add_commands(sub: Any) -> None:
    """Add the control-plane commands to the ``flagedge`` subparsers."""
    reads = [config.REDIS]
    writes_ = [config.REDIS, config.WRITES, config.DEFINITION_LIMITS]

    def command(
        name: str, help: str, fn: Command, groups: list[config.Group]
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help)
        config.add_options(p, groups)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=_run(fn, groups))
        return p

    def waiting(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--wait", action="store_true", help=what)
        p.add_argument(
            "--timeout", type=float, default=30.0, help="seconds --wait waits (default 30)"
        )

    p = command("push", "validate a definitions file and publish it", cmd_push, writes_)
    p.add_argument("file", type=Path, help="the definitions file (JSON or YAML)")
    p.add_argument("--force", action="store_true", help="write even if unchanged")
    waiting(p, "wait until every live edge applied it")

    p = command(
        "kill",
        "kill switch: without --variant the flag is DISABLED everywhere, so callers get the "
        "default in their code",
        cmd_kill,
        writes_,
    )
    p.add_argument("flag", help="the flag key")
    p.add_argument("--variant", help="serve this variant instead of the caller's default")
    waiting(p, "wait until every live edge applied it")

    p = command("restore", "remove a flag's kill switch or rollout", cmd_restore, writes_)
    p.add_argument("flag", help="the flag key")
    waiting(p, "wait until every live edge applied it")

    p = command("rollout", "roll a variant out to PERCENT of users", cmd_rollout, writes_)
    p.add_argument("flag", help="the flag key")
    p.add_argument("percent", type=_percent, help="0 to 100 (a trailing %% is allowed)")
    p.add_argument("--variant", help="the variant rolled out (default: the flag's true one)")
    waiting(p, "wait until every live edge applied it")

    p = command("get", "show definitions and overrides in Redis", cmd_get, reads)
    p.add_argument("flag", nargs="?", help="one flag (default: every flag, one line each)")

    p = command("status", "every live edge and its version", cmd_status, reads)
    waiting(p, "wait until every edge has converged")

    p = command("audit", "who changed what, newest first", cmd_audit, reads)
    p.add_argument("--limit", type=int, default=20, help="entries to show (default 20)")
    p.add_argument("--flag", help="only this flag's entries")
