"""The ops CLI for the Redis control plane: push, kill, restore, rollout, get, status, audit.

    read state (one MULTI) ─► plan the change ─► validate the *resulting* state with the
    engine ─► write (one Lua script, refused if the version moved) ─► retry from the top

Every command takes --redis/--env (FLAGEDGE_REDIS_URL/FLAGEDGE_ENV), --json and --actor.
Exit codes: 0 done; 1 not converged in time, or the version kept moving; 2 invalid input
(every problem listed by path); 3 Redis unreachable.

Writes are versioned above every live edge's version as well as Redis's (``floor``), so that
after Redis restarts empty or loses its last writes, the next write still moves every edge
forward instead of being ignored as old.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from .snapshot import Snapshot
from .errors import DefinitionError, Problem, StoreUnavailable
from .model import Override, OverrideKind
from .store.file import load_document
from .store.plane import ChangeKind, Heartbeat, RawState, Write, WriteResult, encode_override
from .store.redis import RedisAdmin, parse_target
from .store.sync import build_snapshot

OK, NOT_CONVERGED, INVALID, UNREACHABLE = 0, 1, 2, 3
MAX_ATTEMPTS = 20


class _Refused(Exception):
    """A command that cannot proceed: the message, and the exit code."""

    def __init__(self, message: str, code: int = INVALID, problems: tuple[Problem, ...] = ()):
        super().__init__(message)
        self.code = code
        self.problems = problems


def default_actor() -> str:
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# -- planning: pure functions from a read state to one write -------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What a command wants to write, and the state that would result (to validate)."""

    write: Write
    result: RawState
    summary: str


def _digest(definitions: bytes | None) -> str:
    if definitions is None:
        return ""
    try:
        count = len(orjson.loads(definitions).get("flags") or {})
    except (orjson.JSONDecodeError, AttributeError):
        count = -1
    flags = f", {count} flags" if count >= 0 else ", unreadable"
    return f"sha256:{hashlib.sha256(definitions).hexdigest()[:12]}{flags}"


def _document(raw: RawState) -> dict[str, Any]:
    if raw.definitions is None:
        raise _Refused(
            "Redis holds no definitions for this environment: `flagedge push FILE` first"
        )
    try:
        doc = orjson.loads(raw.definitions)
    except orjson.JSONDecodeError as exc:
        raise _Refused(
            "the definitions in Redis are corrupt; push a good file",
            problems=(Problem("definitions", f"invalid JSON: {exc}"),),
        ) from None
    if not isinstance(doc, dict):
        raise _Refused("the definitions in Redis are not a JSON object; push a good file")
    return doc


def _flag_definition(doc: Mapping[str, Any], flag: str) -> Mapping[str, Any]:
    flags = doc.get("flags")
    definition = flags.get(flag) if isinstance(flags, dict) else None
    if not isinstance(definition, dict):
        known = ", ".join(sorted(flags)) if isinstance(flags, dict) else "none"
        problem = Problem(f"flags.{flag}", f"not defined (defined: {known})")
        raise _Refused(f"no flag named {flag!r}", problems=(problem,))
    return definition


def _with_override(raw: RawState, flag: str, ov: Override | None) -> RawState:
    overrides = dict(raw.overrides)
    if ov is None:
        overrides.pop(flag, None)
    else:
        overrides[flag] = encode_override(ov)
    return RawState(raw.version + 1, raw.definitions, MappingProxyType(overrides))


def plan_push(raw: RawState, definitions: bytes, actor: str, floor: int) -> Plan:
    result = RawState(raw.version + 1, definitions, raw.overrides)
    write = Write(
        expected=raw.version,
        kind=ChangeKind.DEFINITIONS,
        actor=actor,
        action="push",
        before=_digest(raw.definitions),
        after=_digest(definitions),
        definitions=definitions,
        floor=floor,
    )
    return Plan(write, result, "pushed definitions")


def plan_override(
    raw: RawState, flag: str, ov: Override | None, action: str, actor: str, floor: int
) -> Plan:
    _flag_definition(_document(raw), flag)
    before = raw.overrides.get(flag, b"").decode("utf-8", "replace")
    after = "" if ov is None else encode_override(ov).decode()
    write = Write(
        expected=raw.version,
        kind=ChangeKind.OVERRIDE,
        actor=actor,
        action=action,
        flag=flag,
        before=before,
        after=after,
        override=ov,
        floor=floor,
    )
    return Plan(write, _with_override(raw, flag, ov), f"{action} {flag}")


def _two_bucket_fractional(targeting: Any) -> tuple[list[Any], int] | None:
    """(the fractional's argument list, index of the first bucket) when ``targeting`` is a
    plain top-level ``fractional`` over two literal ``[variant, weight]`` buckets."""
    if not isinstance(targeting, dict) or list(targeting) != ["fractional"]:
        return None
    args = targeting["fractional"]
    if not isinstance(args, list) or not args:
        return None
    first = 0 if isinstance(args[0], list) else 1
    buckets = args[first:]
    if len(buckets) != 2:
        return None
    for b in buckets:
        if not (
            isinstance(b, list)
            and len(b) == 2
            and isinstance(b[0], str)
            and isinstance(b[1], int | float)
            and not isinstance(b[1], bool)
        ):
            return None
    return args, first


def rollout_variant(definition: Mapping[str, Any], variant: str | None) -> str:
    """The variant a rollout rolls out: the one named, else the flag's ``true`` variant,
    else the one variant that is not the default."""
    variants = definition.get("variants")
    names = [str(n) for n in variants] if isinstance(variants, dict) else []
    if variant is not None:
        if variant not in names:
            raise _Refused(
                f"{variant!r} is not a variant of this flag ({', '.join(names)})",
                problems=(Problem("variant", f"one of {', '.join(names)}"),),
            )
        return variant
    assert isinstance(variants, dict)
    truthy = [n for n in names if variants[n] is True]
    if len(truthy) == 1:
        return truthy[0]
    others = [n for n in names if n != definition.get("defaultVariant")]
    if len(others) == 1:
        return others[0]
    raise _Refused("this flag has several candidate variants: name one with --variant")


def _weights(percent: float) -> tuple[int, int]:
    """Integer weights for ``percent`` and the rest (flagd weights are integers). A finer
    scale keeps the same users in: a bucket number scales with the total."""
    if float(percent).is_integer():
        return int(percent), 100 - int(percent)
    basis = round(percent * 100)
    return basis, 10_000 - basis


def plan_rollout(
    raw: RawState, flag: str, percent: float, variant: str | None, actor: str, floor: int
) -> Plan:
    doc = _document(raw)
    definition = _flag_definition(doc, flag)
    chosen = rollout_variant(definition, variant)
    split = _two_bucket_fractional(definition.get("targeting"))
    rollout_override = raw.overrides.get(flag)
    has_rollout = rollout_override is not None and b'"rollout"' in rollout_override
    if split is None or has_rollout or chosen not in {b[0] for b in split[0][split[1] :]}:
        ov = Override(OverrideKind.ROLLOUT, chosen, percent)
        return plan_override(raw, flag, ov, "rollout", actor, floor)
    # Rewrite the split's weights in a copy of the document (the read one stays untouched).
    new_doc = orjson.loads(raw.definitions or b"{}")
    args = new_doc["flags"][flag]["targeting"]["fractional"]
    mine, rest = _weights(percent)
    before = orjson.dumps(args[split[1] :]).decode()
    for bucket in args[split[1] :]:
        bucket[1] = mine if bucket[0] == chosen else rest
    definitions = orjson.dumps(new_doc)
    write = Write(
        expected=raw.version,
        kind=ChangeKind.DEFINITIONS,
        actor=actor,
        action="rollout",
        flag=flag,
        before=before,
        after=orjson.dumps(args[split[1] :]).decode(),
        definitions=definitions,
        floor=floor,
    )
    result = RawState(raw.version + 1, definitions, raw.overrides)
    return Plan(write, result, f"rollout {flag}: {chosen} {percent:g}% (fractional weights)")


def validate(plan: Plan) -> Snapshot:
    """The resulting state through the real engine; _Refused with every problem if invalid."""
    try:
        snap = build_snapshot(plan.result)
    except DefinitionError as exc:
        raise _Refused("the change would leave an invalid state", problems=exc.problems) from None
    if snap.problems:
        raise _Refused("the definitions have problems", problems=snap.problems)
    if plan.write.flag and plan.write.flag not in snap.flags:
        raise _Refused(f"no flag named {plan.write.flag!r}")
    return snap


# -- running against Redis -----------------------------------------------------------------


def _admin(args: argparse.Namespace) -> RedisAdmin:
    if not args.redis and not args.sentinel:
        raise _Refused("no Redis given: --redis URL or FLAGEDGE_REDIS_URL")
    if not args.env:
        raise _Refused("no environment given: --env NAME or FLAGEDGE_ENV")
    try:
        target = parse_target(args.redis or "", args.sentinel, args.sentinel_master)
    except ValueError as exc:
        raise _Refused(f"bad Redis address: {exc}") from None
    return RedisAdmin(target, args.env)


def _floor(admin: RedisAdmin) -> int:
    return max((e.version for e in admin.edges()), default=0)


def apply(
    admin: RedisAdmin, make: Callable[[RawState, int], Plan | None]
) -> tuple[Plan, WriteResult] | None:
    """Read, plan, validate, write; again while the version moves under us. None: no-op."""
    for _ in range(MAX_ATTEMPTS):
        raw = admin.read()
        plan = make(raw, _floor(admin))
        if plan is None:
            return None
        validate(plan)
        result = admin.write(plan.write)
        if result.ok:
            return plan, result
    raise _Refused(
        f"gave up after {MAX_ATTEMPTS} tries: the version kept moving", code=NOT_CONVERGED
    )


def _out(args: argparse.Namespace, value: Mapping[str, Any], text: str) -> None:
    if args.json:
        sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(text)


def _wait_edges(admin: RedisAdmin, version: int, timeout: float) -> tuple[bool, list[Heartbeat]]:
    """Poll heartbeats until every live edge reports ``version`` or later (or time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        edges = admin.edges()
        if all(e.version >= version for e in edges) or time.monotonic() >= deadline:
            return all(e.version >= version for e in edges), edges
        time.sleep(0.02)


def _write_command(
    args: argparse.Namespace,
    admin: RedisAdmin,
    make: Callable[[RawState, int], Plan | None],
    noop: str,
) -> int:
    done = apply(admin, make)
    if done is None:
        _out(args, {"ok": True, "changed": False, "message": noop}, noop)
        return OK
    plan, result = done
    out: dict[str, Any] = {
        "ok": True,
        "changed": True,
        "env": args.env,
        "version": result.version,
        "action": plan.write.action,
        "flag": plan.write.flag or None,
        "summary": plan.summary,
    }
    text = f"{plan.summary} in env {args.env!r}: version {result.version}"
    code = OK
    if getattr(args, "wait", False):
        converged, edges = _wait_edges(admin, result.version, args.timeout)
        written = result.ts_ms / 1000
        out["converged"] = converged
        out["edges"] = [
            {
                "id": e.id,
                "version": e.version,
                "applied_ms": round((e.applied_at - written) * 1000, 3)
                if e.version >= result.version
                else None,
            }
            for e in edges
        ]
        lines = [text]
        for e in edges:
            if e.version >= result.version:
                took = (e.applied_at - written) * 1000
                later = "" if e.version == result.version else f" (now at {e.version})"
                lines.append(f"  {e.id}: applied in {took:.1f} ms{later}")
            else:
                lines.append(f"  {e.id}: still at version {e.version}")
        if not edges:
            lines.append("  (no live edges)")
        if not converged:
            lines.append(f"not every edge applied it within {args.timeout:g} s")
            code = NOT_CONVERGED
        text = "\n".join(lines)
    _out(args, out, text)
    return code


def cmd_push(args: argparse.Namespace, admin: RedisAdmin) -> int:
    document = load_document(args.file)
    if not isinstance(document, dict):
        raise _Refused(f"{args.file}: the definitions are a JSON object")
    try:
        snap = Snapshot.build(document)
    except DefinitionError as exc:
        raise _Refused(f"{args.file} is invalid; nothing written", problems=exc.problems) from None
    if snap.problems:
        raise _Refused(f"{args.file} has problems; nothing written", problems=snap.problems)
    definitions = orjson.dumps(document)

    def make(raw: RawState, floor: int) -> Plan | None:
        if raw.definitions == definitions and floor <= raw.version and not args.force:
            return None
        return plan_push(raw, definitions, args.actor, floor)

    return _write_command(args, admin, make, "definitions unchanged; nothing written")


def cmd_kill(args: argparse.Namespace, admin: RedisAdmin) -> int:
    ov = Override(OverrideKind.KILL, args.variant)
    return _write_command(
        args,
        admin,
        lambda raw, floor: plan_override(raw, args.flag, ov, "kill", args.actor, floor),
        "",
    )


def cmd_restore(args: argparse.Namespace, admin: RedisAdmin) -> int:
    def make(raw: RawState, floor: int) -> Plan | None:
        if args.flag not in raw.overrides:
            return None
        return plan_override(raw, args.flag, None, "restore", args.actor, floor)

    return _write_command(args, admin, make, f"{args.flag} has no override; nothing to restore")


def cmd_rollout(args: argparse.Namespace, admin: RedisAdmin) -> int:
    if not 0 <= args.percent <= 100:
        raise _Refused(
            f"{args.percent:g} is not a percentage",
            problems=(Problem("percent", "a number from 0 to 100"),),
        )
    return _write_command(
        args,
        admin,
        lambda raw, floor: plan_rollout(
            raw, args.flag, args.percent, args.variant, args.actor, floor
        ),
        "",
    )


def cmd_get(args: argparse.Namespace, admin: RedisAdmin) -> int:
    raw = admin.read()
    doc = _document(raw)
    flags = doc.get("flags") if isinstance(doc.get("flags"), dict) else {}
    assert isinstance(flags, dict)
    keys = [args.flag] if args.flag else list(flags)
    if args.flag:
        _flag_definition(doc, args.flag)
    out: dict[str, Any] = {"env": args.env, "version": raw.version, "flags": {}}
    lines = [f"env {args.env!r} at version {raw.version}, {len(flags)} flag(s)"]
    for key in keys:
        definition = flags.get(key)
        ov_raw = raw.overrides.get(key)
        try:
            override = None if ov_raw is None else orjson.loads(ov_raw)
        except orjson.JSONDecodeError:
            override = {"corrupt": ov_raw.decode("utf-8", "replace") if ov_raw else ""}
        out["flags"][key] = {"definition": definition, "override": override}
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
    _out(args, out, "\n".join(lines))
    return OK


def _edge_rows(version: int, edges: list[Heartbeat]) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "host": e.host,
            "pid": e.pid,
            "version": e.version,
            "behind": max(0, version - e.version),
            "converged": e.version == version,
            "ahead_of_redis": e.version > version,
            "stale": e.stale,
            "error": e.error,
            "applied_at": e.applied_at,
        }
        for e in edges
    ]


def cmd_status(args: argparse.Namespace, admin: RedisAdmin) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        version = admin.version()
        rows = _edge_rows(version, admin.edges())
        converged = all(r["converged"] for r in rows)
        if converged or not args.wait or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    lines = [
        f"env {args.env!r}: Redis at version {version}, {len(rows)} live edge(s), "
        + ("all converged" if converged else "NOT converged")
    ]
    for r in rows:
        state = (
            "converged"
            if r["converged"]
            else "ahead of Redis (Redis lost state: push to re-seed)"
            if r["ahead_of_redis"]
            else f"{r['behind']} behind"
        )
        flags = " STALE" if r["stale"] else ""
        error = f" error: {r['error']}" if r["error"] else ""
        lines.append(f"  {r['id']}: version {r['version']}, {state}{flags}{error}")
    _out(
        args,
        {"env": args.env, "version": version, "converged": converged, "edges": rows},
        "\n".join(lines),
    )
    return OK if converged else NOT_CONVERGED


def cmd_audit(args: argparse.Namespace, admin: RedisAdmin) -> int:
    entries = admin.audit(args.limit, args.flag)
    lines = []
    for e in entries:
        when = datetime.fromtimestamp(e.ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        what = f"{e.before or '-'} -> {e.after or '-'}"
        lines.append(f"{when[:-4]}Z v{e.version} {e.actor} {e.action} {e.flag or '-'} {what}")
    _out(
        args,
        {"env": args.env, "entries": [e.to_json() for e in entries]},
        "\n".join(lines) if lines else "no audit entries",
    )
    return OK


# -- argparse ------------------------------------------------------------------------------


def _run(command: Callable[[argparse.Namespace, RedisAdmin], int]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            admin = _admin(args)
            try:
                return command(args, admin)
            finally:
                admin.close()
        except _Refused as exc:
            return _refuse(args, str(exc), exc.code, exc.problems)
        except DefinitionError as exc:
            return _refuse(args, "invalid input", INVALID, exc.problems)
        except StoreUnavailable as exc:
            return _refuse(args, str(exc), UNREACHABLE)

    return run


def _refuse(
    args: argparse.Namespace, message: str, code: int, problems: tuple[Problem, ...] = ()
) -> int:
    if args.json:
        sys.stdout.write(
            orjson.dumps(
                {
                    "ok": False,
                    "error": message,
                    "problems": [{"path": p.path, "message": p.message} for p in problems],
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
            + "\n"
        )
    print(f"flagedge: {message}", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return code


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("control plane")
    group.add_argument(
        "--redis",
        default=os.environ.get("FLAGEDGE_REDIS_URL") or None,
        metavar="URL",
        help="redis://[user:password@]host:port, rediss://..., redis+sentinel://... "
        "[FLAGEDGE_REDIS_URL]",
    )
    group.add_argument(
        "--env", default=os.environ.get("FLAGEDGE_ENV") or None, help="environment [FLAGEDGE_ENV]"
    )
    group.add_argument("--sentinel", default=os.environ.get("FLAGEDGE_SENTINEL") or None)
    group.add_argument(
        "--sentinel-master", default=os.environ.get("FLAGEDGE_SENTINEL_MASTER") or None
    )
    group.add_argument("--json", action="store_true", help="machine-readable output")
    group.add_argument(
        "--actor", default=default_actor(), help="who to record in the audit ($USER@host)"
    )
    return common


def _percent(text: str) -> float:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None


def add_commands(sub: Any) -> None:
    """Add the control-plane commands to the ``flagedge`` subparsers."""
    common = [_common()]

    def waiting(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", action="store_true", help="wait until every live edge applied it")
        p.add_argument("--timeout", type=float, default=30.0, help="seconds --wait waits")

    p = sub.add_parser("push", parents=common, help="validate a definitions file and publish it")
    p.add_argument("file", type=Path)
    p.add_argument("--force", action="store_true", help="write even if unchanged")
    waiting(p)
    p.set_defaults(func=_run(cmd_push))

    p = sub.add_parser("kill", parents=common, help="kill switch: turn a flag off everywhere")
    p.add_argument("flag")
    p.add_argument("--variant", help="serve this variant instead of the caller's default")
    waiting(p)
    p.set_defaults(func=_run(cmd_kill))

    p = sub.add_parser("restore", parents=common, help="remove a flag's kill switch or rollout")
    p.add_argument("flag")
    waiting(p)
    p.set_defaults(func=_run(cmd_restore))

    p = sub.add_parser("rollout", parents=common, help="roll a variant out to PERCENT of users")
    p.add_argument("flag")
    p.add_argument("percent", type=_percent)
    p.add_argument("--variant", help="the variant rolled out (default: the flag's true one)")
    waiting(p)
    p.set_defaults(func=_run(cmd_rollout))

    p = sub.add_parser("get", parents=common, help="show definitions and overrides in Redis")
    p.add_argument("flag", nargs="?")
    p.set_defaults(func=_run(cmd_get))

    p = sub.add_parser("status", parents=common, help="every live edge and its version")
    p.add_argument("--wait", action="store_true", help="wait until every edge has converged")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds --wait waits")
    p.set_defaults(func=_run(cmd_status))

    p = sub.add_parser("audit", parents=common, help="who changed what, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--flag")
    p.set_defaults(func=_run(cmd_audit))
