"""Writes to the control plane, one implementation for every client (the CLI, the admin
service): read the state, plan one change, validate the *resulting* state with the real
engine, write it (one Lua script, refused if the version moved), and again from the top.

    read (one MULTI) ─► plan_* (pure) ─► validate (Snapshot.build) ─► write ─► retry

Writes are versioned above every live edge's version as well as Redis's (``floor``), so that
after Redis restarts empty or loses its last writes, the next write still moves every edge
forward instead of being ignored as old. A heartbeat claiming a version more than
MAX_FLOOR_GAP above Redis's is not believed (anyone who can write a heartbeat key could
otherwise push every later version to the end of the exact range): it is left out of the
floor, and the write says so. A change that cannot be made raises Refusal with the exit
code and every problem by path.

An edge has applied a write when it reports that version, or a later one that Redis holds;
an edge reporting a version Redis never reached has not (it ignored the write as old).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import orjson

from ..definitions import DEFAULT_LIMITS, DefinitionLimits
from ..errors import Conflict, DefinitionError, ExitCode, Problem, Refusal
from ..model import Override, OverrideKind
from ..rulelists import ListEdit, edit_lists
from ..snapshot import Snapshot
from .plane import (
    MAX_VERSION,
    Change,
    ChangeKind,
    Heartbeat,
    RawState,
    Write,
    WriteResult,
    build_snapshot,
    encode_override,
)

MAX_ATTEMPTS = 20
# How far above Redis's version a live edge's heartbeat may lift the next write's version.
# A Redis that restarted empty is behind its edges by the writes it lost: a million is more
# than any environment makes between restarts, and far below the 2^53 ceiling.
MAX_FLOOR_GAP = 1_000_000


class Admin(Protocol):
    """What a writer needs from the store (store/redis.py's RedisAdmin)."""

    def read(self) -> RawState: ...

    def version(self) -> int: ...

    def write(self, w: Write) -> WriteResult: ...

    def edges(self) -> list[Heartbeat]: ...

    def changes_since(self, version: int) -> list[Change] | None: ...


@dataclass(frozen=True, slots=True)
class Done:
    """A write made: its plan, what Redis answered, and the heartbeats left out of its
    version floor (each claims a version beyond reason)."""

    plan: Plan
    result: WriteResult
    ignored: tuple[Heartbeat, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """What a command wants to write, and the state that would result (to validate)."""

    write: Write
    result: RawState
    summary: str


Outcome = Done | None  # what an operation did; None: nothing to do


def _digest(definitions: bytes | None) -> str:
    if definitions is None:
        return ""
    try:
        count = len(orjson.loads(definitions).get("flags") or {})
    except (orjson.JSONDecodeError, AttributeError):
        count = -1
    flags = f", {count} flags" if count >= 0 else ", unreadable"
    return f"sha256:{hashlib.sha256(definitions).hexdigest()[:12]}{flags}"


def document_of(raw: RawState) -> dict[str, Any]:
    if raw.definitions is None:
        raise Refusal("Redis holds no definitions for this environment: `flagedge push FILE` first")
    try:
        doc = orjson.loads(raw.definitions)
    except orjson.JSONDecodeError as exc:
        raise Refusal(
            "the definitions in Redis are corrupt; push a good file",
            problems=(Problem("definitions", f"invalid JSON: {exc}"),),
        ) from None
    if not isinstance(doc, dict):
        raise Refusal("the definitions in Redis are not a JSON object; push a good file")
    return doc


def flag_definition(doc: Mapping[str, Any], flag: str) -> Mapping[str, Any]:
    flags = doc.get("flags")
    definition = flags.get(flag) if isinstance(flags, dict) else None
    if not isinstance(definition, dict):
        known = ", ".join(sorted(flags)) if isinstance(flags, dict) else "none"
        problem = Problem(f"flags.{flag}", f"not defined (defined: {known})")
        raise Refusal(f"no flag named {flag!r}", problems=(problem,))
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
    flag_definition(document_of(raw), flag)
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
            raise Refusal(
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
    raise Refusal("this flag has several candidate variants: name one with --variant")


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
    doc = document_of(raw)
    definition = flag_definition(doc, flag)
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


def validate(plan: Plan, limits: DefinitionLimits = DEFAULT_LIMITS) -> Snapshot:
    """The resulting state through the real engine; Refusal with every problem if invalid.

    A write of definitions is refused for any problem, even one that only disables a flag.
    An override (kill, restore, rollout) leaves the definitions as the edges already serve
    them: a soft problem of some other flag must not block an emergency kill switch, so only
    a problem of the override itself (a variant the flag lacks) refuses it."""
    try:
        snap = build_snapshot(plan.result, limits=limits)
    except DefinitionError as exc:
        raise Refusal("the change would leave an invalid state", problems=exc.problems) from None
    if snap.problems and plan.write.kind is not ChangeKind.OVERRIDE:
        raise Refusal("the definitions have problems", problems=snap.problems)
    if plan.write.flag and plan.write.flag not in snap.flags:
        raise Refusal(f"no flag named {plan.write.flag!r}")
    return snap


# -- running against a store ------------------------------------------------------------------


def floor(admin: Admin, version: int) -> tuple[int, tuple[Heartbeat, ...]]:
    """The highest version a live edge reports, at most MAX_FLOOR_GAP above Redis's
    ``version``: writes go above it. Also the heartbeats left out for claiming more."""
    edges = admin.edges()
    bound = min(version + MAX_FLOOR_GAP, MAX_VERSION - 1)
    believed = [e.version for e in edges if e.version <= bound]
    ignored = tuple(e for e in edges if e.version > bound)
    return max(believed, default=0), ignored


def ignored_note(ignored: Sequence[tuple[str, int]], version: int) -> str:
    """What a command says about heartbeats it did not believe: (edge id, version) pairs."""
    names = ", ".join(f"{edge} at version {claimed}" for edge, claimed in ignored[:5])
    more = f" and {len(ignored) - 5} more" if len(ignored) > 5 else ""
    return (
        f"ignored the version of {len(ignored)} edge(s) ({names}{more}): more than "
        f"{MAX_FLOOR_GAP} above Redis's version {version}; they will not apply this write"
    )


def check_expected(admin: Admin, raw: RawState, expected: int | None, flag: str | None) -> None:
    """The concurrent-edit check: Conflict when ``flag`` (or, with None, anything) changed
    after version ``expected``, the version the editor was looking at. Writes to other flags
    in between do not count: they cannot be lost by this one."""
    if expected is None or raw.version == expected:
        return
    if expected > raw.version:
        raise Conflict(
            f"you edited version {expected}, but Redis is at {raw.version} (it lost state?): "
            "reload and apply your change again"
        )
    changes = admin.changes_since(expected)
    touching = (
        None if changes is None else [c for c in changes if flag is None or c.flag in ("", flag)]
    )
    if touching is None or touching:
        who = (
            "; ".join(f"{c.actor} ({c.action}, version {c.version})" for c in touching[-3:])
            if touching
            else "the audit stream no longer reaches back that far"
        )
        what = f"{flag!r}" if flag else "the definitions"
        raise Conflict(
            f"{what} changed since version {expected}, which you edited: {who}. Nothing was "
            f"written; reload (now version {raw.version}) and apply your change again",
            problems=(Problem("version", f"expected {expected}, now {raw.version}"),),
        )


def apply(
    admin: Admin,
    make: Callable[[RawState, int], Plan | None],
    limits: DefinitionLimits = DEFAULT_LIMITS,
    *,
    expected: int | None = None,
    flag: str | None = None,
) -> Done | None:
    """Read, plan, validate, write; again while the version moves under us (unless
    ``expected`` says which version the change was made against, and ``flag`` changed
    since: then Conflict). None: no-op."""
    for _ in range(MAX_ATTEMPTS):
        raw = admin.read()
        check_expected(admin, raw, expected, flag)
        lowest, ignored = floor(admin, raw.version)
        plan = make(raw, lowest)
        if plan is None:
            return None
        validate(plan, limits)
        result = admin.write(plan.write)
        if result.ok:
            return Done(plan, result, ignored)
    raise Refusal(f"gave up after {MAX_ATTEMPTS} tries: the version kept moving", ExitCode.FAILED)


def applied(edge: Heartbeat, version: int, redis_version: int) -> bool:
    """Whether ``edge`` has applied the write that made ``version``: it reports that
    version, or a later one Redis holds (a version Redis never reached is not a later
    state but a refusal to apply this one)."""
    return version <= edge.version <= max(version, redis_version)


def wait_edges(admin: Admin, version: int, timeout: float) -> tuple[bool, list[Heartbeat]]:
    """Poll heartbeats until every live edge has applied ``version`` (or time is up). No
    live edge is no convergence."""
    deadline = time.monotonic() + timeout
    while True:
        edges = admin.edges()
        current = admin.version()
        done = bool(edges) and all(applied(e, version, current) for e in edges)
        if done or time.monotonic() >= deadline:
            return done, edges
        time.sleep(0.02)


# -- the operations ---------------------------------------------------------------------------


def push(
    admin: Admin,
    document: Any,
    actor: str,
    *,
    force: bool = False,
    source: str = "the definitions",
    limits: DefinitionLimits = DEFAULT_LIMITS,
    expected: int | None = None,
) -> Done | None:
    """Publish a definitions document (validated first); None when Redis already has it.
    Every problem validation or the compiler finds refuses it."""
    if not isinstance(document, dict):
        raise Refusal(f"{source}: the definitions are a JSON object")
    try:
        snap = Snapshot.build(document, limits=limits)
    except DefinitionError as exc:
        raise Refusal(f"{source} is invalid; nothing written", problems=exc.problems) from None
    if snap.problems:
        raise Refusal(f"{source} has problems; nothing written", problems=snap.problems)
    definitions = orjson.dumps(snap.document)
    if len(definitions) > limits.max_bytes:
        problem = Problem(
            "", f"{len(definitions)} bytes as JSON, over the limit of {limits.max_bytes} bytes"
        )
        raise Refusal(f"{source} is too large for the edges; nothing written", problems=(problem,))

    def make(raw: RawState, floor: int) -> Plan | None:
        if raw.definitions == definitions and floor <= raw.version and not force:
            return None
        return plan_push(raw, definitions, actor, floor)

    return apply(admin, make, limits, expected=expected)


def kill(
    admin: Admin,
    flag: str,
    variant: str | None,
    actor: str,
    limits: DefinitionLimits = DEFAULT_LIMITS,
    *,
    expected: int | None = None,
) -> Done | None:
    """Kill switch: the flag answers ``variant`` (or, with None, the caller's default)."""
    ov = Override(OverrideKind.KILL, variant)
    return apply(
        admin,
        lambda raw, floor: plan_override(raw, flag, ov, "kill", actor, floor),
        limits,
        expected=expected,
        flag=flag,
    )


def restore(
    admin: Admin,
    flag: str,
    actor: str,
    limits: DefinitionLimits = DEFAULT_LIMITS,
    *,
    expected: int | None = None,
) -> Done | None:
    """Remove a flag's kill switch or forced rollout; None when it has none."""

    def make(raw: RawState, floor: int) -> Plan | None:
        if flag not in raw.overrides:
            return None
        return plan_override(raw, flag, None, "restore", actor, floor)

    return apply(admin, make, limits, expected=expected, flag=flag)


def rollout(
    admin: Admin,
    flag: str,
    percent: float,
    variant: str | None,
    actor: str,
    limits: DefinitionLimits = DEFAULT_LIMITS,
    *,
    expected: int | None = None,
) -> Done | None:
    """Serve ``variant`` to ``percent`` of targeting keys."""
    if not 0 <= percent <= 100:
        raise Refusal(
            f"{percent:g} is not a percentage",
            problems=(Problem("percent", "a number from 0 to 100"),),
        )
    return apply(
        admin,
        lambda raw, floor: plan_rollout(raw, flag, percent, variant, actor, floor),
        limits,
        expected=expected,
        flag=flag,
    )


def plan_definition(
    raw: RawState, flag: str, definition: Any, action: str, actor: str, floor: int
) -> Plan | None:
    """Replace one flag's definition (None: it is already so)."""
    if not isinstance(definition, dict):
        raise Refusal(
            "a flag definition is a JSON object", problems=(Problem(f"flags.{flag}", "an object"),)
        )
    doc = document_of(raw)
    current = flag_definition(doc, flag)
    if current == definition:
        return None
    doc["flags"][flag] = definition
    try:
        definitions = orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError) as exc:  # nesting past orjson's limit, NaN...
        raise Refusal(
            "the definition cannot be stored",
            problems=(Problem(f"flags.{flag}", f"not storable as JSON: {exc}"),),
        ) from None
    write = Write(
        expected=raw.version,
        kind=ChangeKind.DEFINITIONS,
        actor=actor,
        action=action,
        flag=flag,
        before=orjson.dumps(current).decode(),
        after=orjson.dumps(definition).decode(),
        definitions=definitions,
        floor=floor,
    )
    result = RawState(raw.version + 1, definitions, raw.overrides)
    return Plan(write, result, f"{action} {flag}")


def edit(
    admin: Admin, flag: str, definition: Any, actor: str, *, expected: int | None
) -> Done | None:
    """Replace a flag's definition, validated with the rest of the state by the engine."""
    return apply(
        admin,
        lambda raw, floor: plan_definition(raw, flag, definition, "edit", actor, floor),
        expected=expected,
        flag=flag,
    )


def edit_flag_lists(
    admin: Admin, flag: str, edits: Sequence[ListEdit], actor: str, *, expected: int | None
) -> Done | None:
    """Add and remove values in a flag's rule lists (rulelists.py)."""

    def make(raw: RawState, floor: int) -> Plan | None:
        current = flag_definition(document_of(raw), flag)
        try:
            changed = edit_lists(current, edits)
        except DefinitionError as exc:
            raise Refusal("the list edit cannot be made", problems=exc.problems) from None
        return plan_definition(raw, flag, changed, "edit-lists", actor, floor)

    return apply(admin, make, expected=expected, flag=flag)


def edge_rows(version: int, edges: Sequence[Heartbeat]) -> list[dict[str, Any]]:
    """Each live edge against Redis's version: behind, converged, ahead (Redis lost state,
    or the edge claims a version Redis never held)."""
    return [
        {
            "id": e.id,
            "host": e.host,
            "pid": e.pid,
            "version": e.version,
            "behind": max(0, version - e.version),
            "converged": e.version == version,
            "ahead_of_redis": e.version > version,
            # more than a write could move Redis's version back by: not a lost write
            "beyond_reason": e.version > version + MAX_FLOOR_GAP,
            "stale": e.stale,
            "error": e.error,
            "applied_at": e.applied_at,
        }
        for e in edges
    ]
