"""The ops commands for the Redis control plane: push, kill, restore, rollout (writes, through
store/writes.py, the one write path) and get, status, audit (reads).

Every command takes the Redis connection settings (config.REDIS) and --json; the writes
also take --actor (config.WRITES), the definition limits they validate with
(config.DEFINITION_LIMITS) and --wait/--timeout. Exit codes are errors.ExitCode: 1 not
converged in time (or the version kept moving, or no edge reports at all), 2 invalid input,
3 Redis unreachable.

With --admin URL (FLAGEDGE_ADMIN_URL) and a token, every command goes through the admin
service's API instead (cli/remote.py): the same output and exit codes, no Redis credentials
on this machine, and the audit names the token's identity instead of --actor.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .. import config
from ..definitions import DEFAULT_LIMITS, DefinitionLimits
from ..errors import ConfigError, ExitCode, Refusal
from ..store import writes
from ..store.file import load_document
from ..store.redis import AuditEntry, RedisAdmin, parse_target
from .common import out, settings
from .remote import Remote, connect_remote, use_admin

Outcome = writes.Done | None


@dataclass(frozen=True, slots=True)
class Done:
    """What a write did, whichever way it went (Redis or the admin service)."""

    summary: str
    action: str
    flag: str | None
    version: int
    ts_ms: int
    # heartbeats left out of the version floor (a version beyond reason): (id, version)
    ignored: tuple[tuple[str, int], ...] = ()
    redis_version: int = 0  # Redis's version the write went above, for the warning


class Local:
    """The commands' store: Redis, through store/writes.py."""

    def __init__(
        self, admin: RedisAdmin, env: str, limits: DefinitionLimits = DEFAULT_LIMITS
    ) -> None:
        self.admin, self.env, self.limits = admin, env, limits

    @staticmethod
    def _done(outcome: Outcome) -> Done | None:
        if outcome is None:
            return None
        plan, result = outcome.plan, outcome.result
        return Done(
            plan.summary,
            plan.write.action,
            plan.write.flag or None,
            result.version,
            result.ts_ms,
            tuple((e.id, e.version) for e in outcome.ignored),
            plan.write.expected,
        )

    def push(self, document: Any, actor: str, force: bool, source: str) -> Done | None:
        done = writes.push(
            self.admin, document, actor, force=force, source=source, limits=self.limits
        )
        return self._done(done)

    def kill(self, flag: str, variant: str | None, actor: str) -> Done | None:
        return self._done(writes.kill(self.admin, flag, variant, actor, self.limits))

    def restore(self, flag: str, actor: str) -> Done | None:
        return self._done(writes.restore(self.admin, flag, actor, self.limits))

    def rollout(self, flag: str, percent: float, variant: str | None, actor: str) -> Done | None:
        return self._done(writes.rollout(self.admin, flag, percent, variant, actor, self.limits))

    def edges(self) -> tuple[int, list[dict[str, Any]]]:
        version = self.admin.version()
        return version, writes.edge_rows(version, self.admin.edges())

    def state(self) -> tuple[int, dict[str, Any], dict[str, Any]]:
        raw = self.admin.read()
        doc = writes.document_of(raw)
        overrides: dict[str, Any] = {}
        for key, ov_raw in raw.overrides.items():
            try:
                overrides[key] = orjson.loads(ov_raw)
            except orjson.JSONDecodeError:
                overrides[key] = {"corrupt": ov_raw.decode("utf-8", "replace")}
        return raw.version, doc, overrides

    def audit(self, limit: int, flag: str | None) -> list[AuditEntry]:
        return self.admin.audit(limit, flag)

    def close(self) -> None:
        self.admin.close()


class Through:
    """The commands' store: the admin service's API (cli/remote.py)."""

    def __init__(self, remote: Remote) -> None:
        self.remote, self.env = remote, remote.env

    def _write(self, path: str, body: dict[str, Any], method: str = "POST") -> Done | None:
        answer = self.remote.call(method, path, body)
        if not answer.get("changed"):
            return None
        return Done(
            answer["summary"],
            answer["action"],
            answer.get("flag"),
            answer["version"],
            answer["written_ms"],
            tuple((e["id"], e["version"]) for e in answer.get("ignored_edges") or ()),
            int(answer.get("redis_version") or 0),
        )

    def push(self, document: Any, actor: str, force: bool, source: str) -> Done | None:
        body = {"definitions": document, "force": force, "source": source}
        return self._write(self.remote.env_path("/definitions"), body, "PUT")

    def kill(self, flag: str, variant: str | None, actor: str) -> Done | None:
        return self._write(self.remote.flag_path(flag, "/kill"), {"variant": variant})

    def restore(self, flag: str, actor: str) -> Done | None:
        return self._write(self.remote.flag_path(flag, "/restore"), {})

    def rollout(self, flag: str, percent: float, variant: str | None, actor: str) -> Done | None:
        return self._write(
            self.remote.flag_path(flag, "/rollout"), {"percent": percent, "variant": variant}
        )

    def edges(self) -> tuple[int, list[dict[str, Any]]]:
        answer = self.remote.call("GET", self.remote.env_path("/edges"))
        return int(answer["version"]), list(answer["edges"])

    def state(self) -> tuple[int, dict[str, Any], dict[str, Any]]:
        answer = self.remote.call("GET", self.remote.env_path("/definitions"))
        if answer.get("definitions") is None:
            raise Refusal(
                "Redis holds no definitions for this environment: `flagedge push FILE` first"
            )
        return int(answer["version"]), answer["definitions"], dict(answer.get("overrides") or {})

    def audit(self, limit: int, flag: str | None) -> list[AuditEntry]:
        query = urllib.parse.urlencode({"limit": limit, **({"flag": flag} if flag else {})})
        answer = self.remote.call("GET", self.remote.env_path(f"/audit?{query}"))
        return [
            AuditEntry(
                e["id"],
                e["ts"],
                e["version"],
                e["actor"],
                e["action"],
                e["flag"],
                e["before"],
                e["after"],
            )
            for e in answer["entries"]
        ]

    def close(self) -> None:
        pass


Backend = Local | Through


def applied(row: dict[str, Any], version: int, redis_version: int) -> bool:
    """Whether an edge (a row of ``Backend.edges``) applied the write that made ``version``:
    it reports that version or a later one Redis holds (store/writes.py's ``applied``)."""
    return bool(version <= row["version"] <= max(version, redis_version))


def wait_edges(
    backend: Backend, version: int, timeout: float
) -> tuple[bool, int, list[dict[str, Any]]]:
    """Poll until every live edge has applied ``version`` (or time is up): (converged,
    Redis's version, the edges). No live edge is no convergence."""
    deadline = time.monotonic() + timeout
    while True:
        current, rows = backend.edges()
        done = bool(rows) and all(applied(r, version, current) for r in rows)
        if done or time.monotonic() >= deadline:
            return done, current, rows
        time.sleep(0.02)


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
        raise ConfigError("no Redis given: --redis URL, --redis-url-file or FLAGEDGE_REDIS_URL")
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


def _report(args: argparse.Namespace, backend: Backend, done: Done | None, noop: str) -> int:
    """Print what a write did (and, with --wait, each edge applying it)."""
    env = backend.env
    if done is None:
        out(args, {"ok": True, "changed": False, "message": noop}, noop)
        return ExitCode.OK
    body: dict[str, Any] = {
        "ok": True,
        "changed": True,
        "env": env,
        "version": done.version,
        "action": done.action,
        "flag": done.flag,
        "summary": done.summary,
    }
    text = f"{done.summary} in env {env!r}: version {done.version}"
    code = ExitCode.OK
    if done.ignored:
        note = writes.ignored_note(done.ignored, done.redis_version)
        body["ignored_edges"] = [{"id": i, "version": v} for i, v in done.ignored]
        print(f"flagedge: warning: {note}", file=sys.stderr)
    if args.wait:
        converged, current, edges = wait_edges(backend, done.version, args.timeout)
        written = done.ts_ms / 1000
        body["converged"] = converged
        body["edges"] = [
            {
                "id": e["id"],
                "version": e["version"],
                "applied_ms": round((e["applied_at"] - written) * 1000, 3)
                if applied(e, done.version, current)
                else None,
            }
            for e in edges
        ]
        lines = [text]
        for e in edges:
            if applied(e, done.version, current):
                took = (e["applied_at"] - written) * 1000
                later = "" if e["version"] == done.version else f" (now at {e['version']})"
                lines.append(f"  {e['id']}: applied in {took:.1f} ms{later}")
            elif e["version"] > current:
                lines.append(
                    f"  {e['id']}: NOT applied: reports version {e['version']}, which Redis "
                    f"(at {current}) never held"
                )
            else:
                lines.append(f"  {e['id']}: still at version {e['version']}")
        if not edges:
            lines.append(f"  no edge reports for env {env!r}: nothing applied it")
        if not converged:
            if edges:
                lines.append(f"not every edge applied it within {args.timeout:g} s")
            code = ExitCode.FAILED
        text = "\n".join(lines)
    out(args, body, text)
    return code


def cmd_push(args: argparse.Namespace, backend: Backend) -> int:
    document = load_document(args.file, _limits(args).max_bytes)
    done = backend.push(document, _actor(args), args.force, str(args.file))
    return _report(args, backend, done, "definitions unchanged; nothing written")


def cmd_kill(args: argparse.Namespace, backend: Backend) -> int:
    done = backend.kill(args.flag, args.variant, _actor(args))
    return _report(args, backend, done, "")


def cmd_restore(args: argparse.Namespace, backend: Backend) -> int:
    done = backend.restore(args.flag, _actor(args))
    return _report(args, backend, done, f"{args.flag} has no override; nothing to restore")


def cmd_rollout(args: argparse.Namespace, backend: Backend) -> int:
    done = backend.rollout(args.flag, args.percent, args.variant, _actor(args))
    return _report(args, backend, done, "")


def cmd_get(args: argparse.Namespace, backend: Backend) -> int:
    env = backend.env
    version, doc, overrides = backend.state()
    flags = doc.get("flags") if isinstance(doc.get("flags"), dict) else {}
    assert isinstance(flags, dict)
    keys = [args.flag] if args.flag else list(flags)
    if args.flag:
        writes.flag_definition(doc, args.flag)
    body: dict[str, Any] = {"env": env, "version": version, "flags": {}}
    lines = [f"env {env!r} at version {version}, {len(flags)} flag(s)"]
    for key in keys:
        definition = flags.get(key)
        override = overrides.get(key)
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


def cmd_status(args: argparse.Namespace, backend: Backend) -> int:
    env = backend.env
    deadline = time.monotonic() + args.timeout
    while True:
        version, rows = backend.edges()
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
            if r.get("beyond_reason")
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


def cmd_audit(args: argparse.Namespace, backend: Backend) -> int:
    env = backend.env
    entries = backend.audit(args.limit, args.flag)
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

Command = Callable[[argparse.Namespace, Backend], int]


def backend_for(resolved: config.Settings) -> Backend:
    """The admin service when --admin (FLAGEDGE_ADMIN_URL) is given, else Redis."""
    if use_admin(resolved):
        return Through(connect_remote(resolved))
    admin, env = connect(resolved)
    return Local(admin, env, config.definition_limits(resolved))


def _run(command: Command, groups: list[config.Group]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        backend = backend_for(settings(args, [*groups, config.ADMIN_CLIENT]))
        try:
            return command(args, backend)
        finally:
            backend.close()

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
        config.add_options(p, [*groups, config.ADMIN_CLIENT])
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
