"""The control plane's data model and its seam: what Redis holds for one environment, the
change messages, and an in-memory twin of the store for unit tests.

    flagedge:{env}:definitions   the flagd definitions document, JSON text
    flagedge:{env}:overrides     hash: flag key -> Override as JSON (kill switches, rollouts)
    flagedge:{env}:version       integer below 2^53 (exact in Lua's doubles and in JSON);
                                 every write bumps it, it never goes down
    flagedge:{env}:audit         stream: actor, action, flag, before, after, version, ts
    flagedge:{env}:changes       pub/sub channel: {"version", "kind", "key"?, "override"?}
    flagedge:{env}:change        the message the last write published: what an edge checks
                                 a message against before it trusts it (see below)
    flagedge:{env}:edge:{id}     one heartbeat per edge (JSON), expiring unless refreshed
    flagedge:{env}:usage:{day}   hash: ["flag", "variant"] -> evaluations that UTC day, summed
                                 over edges (usage.py), expiring after USAGE_RETENTION_DAYS
    flagedge:{env}:usage:since   the first day of unbroken usage reports (``flagedge stale``)

A write is one atomic step (store/redis.py runs it as one Lua script): check that the
version is still the one the writer validated against, bump it, change the state, append to
the audit stream, record and publish the message. Messages are hints (Redis pub/sub is at
most once, and anyone allowed to PUBLISH can send one); the truth is the state and its
version. An edge applies an override message only after reading, in one atomic MGET, the
version and the change record, when the record says that this very write made this version
by changing that flag, and then applies the override the record holds (the one the write
stored in ``overrides``), never the message's; otherwise it reloads the full state.

Decoding is pure and never trusts Redis: anything malformed becomes a DefinitionError whose
problems name the key and the JSON path, so an edge can log it and keep serving.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Protocol

import orjson

from ..definitions import DEFAULT_LIMITS, DefinitionLimits
from ..errors import DefinitionError, Problem
from ..hashing import Scheme
from ..model import Override, OverrideKind
from ..snapshot import Snapshot

HEARTBEAT_TTL_MS: Final = 5000
USAGE_RETENTION_DAYS: Final = 45
# Versions stay below 2^53: exact as Lua numbers (doubles), in JSON, and in every client.
# A write that would pass it is refused, never rounded.
MAX_VERSION: Final = 2**53 - 1


class _Name:
    """A Keys attribute: the environment's prefix and then ``suffix``."""

    __slots__ = ("suffix",)

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __get__(self, keys: Keys, owner: type[Keys] | None = None) -> str:
        return keys.prefix + self.suffix


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis name one environment uses."""

    env: str

    definitions = _Name("definitions")
    overrides = _Name("overrides")
    version = _Name("version")
    audit = _Name("audit")
    channel = _Name("changes")
    change = _Name("change")  # the message the last write published (edges check against it)
    edge_pattern = _Name("edge:*")
    usage_since = _Name("usage:since")

    @property
    def prefix(self) -> str:
        return f"flagedge:{self.env}:"

    def edge(self, edge_id: str) -> str:
        return f"{self.prefix}edge:{edge_id}"

    def usage(self, day: str) -> str:
        """Evaluation counts for one UTC day (YYYY-MM-DD)."""
        return f"{self.prefix}usage:{day}"


def usage_field(flag: str, variant: str) -> bytes:
    """A usage hash field: JSON, so that no flag or variant name can be mistaken for a
    separator; "" is the variant of an answer without one (the caller's default)."""
    return orjson.dumps([flag, variant])


def parse_usage_field(field: bytes | str) -> tuple[str, str] | None:
    try:
        value = orjson.loads(field)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1]
    return None


# -- state -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawState:
    """What one atomic read returns, still undecoded. ``definitions`` None: never pushed."""

    version: int
    definitions: bytes | None
    overrides: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))


def parse_version(raw: Any, where: str = "version") -> int:
    """A stored version (bytes, text or None for "never written": 0); DefinitionError,
    located at ``where``, for anything but a whole number from 0 to MAX_VERSION."""
    if raw is None:
        return 0
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    if not text.isdigit() or not text.isascii() or len(text) > 16 or int(text) > MAX_VERSION:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise DefinitionError(
            [Problem(where, f"{shown!r} is not a version (a whole number from 0 to 2^53-1)")],
            "Redis",
        )
    return int(text)


@dataclass(frozen=True, slots=True)
class ChangeCheck:
    """What an edge reads, in one atomic command, before it trusts an override message:
    Redis's version and the change record, which the write script sets together with the
    override it describes."""

    version: int
    record: bytes | None

    def confirmed(self, message: ChangeMessage) -> ChangeMessage | None:
        """The change Redis recorded, when the last write made exactly ``message``'s version
        by changing exactly ``message``'s flag (nothing else moved since); else None. Its
        override is the one that write stored, whatever the message claims."""
        if self.version != message.version or self.record is None:
            return None
        recorded = decode_message(self.record)
        if (
            recorded is None
            or recorded.version != message.version
            or recorded.kind is not message.kind
            or recorded.key != message.key
        ):
            return None
        return recorded


@dataclass(frozen=True, slots=True)
class State:
    """A decoded state: the definitions document and the overrides, at one version."""

    version: int
    definitions: Mapping[str, Any]
    overrides: Mapping[str, Override]


def encode_override(ov: Override) -> bytes:
    return orjson.dumps(ov.to_json())


def decode_override(raw: bytes | str | Mapping[str, Any], path: str) -> Override:
    """An Override from its JSON; DefinitionError (located at ``path``) when malformed."""
    try:
        data = orjson.loads(raw) if isinstance(raw, bytes | str) else raw
    except orjson.JSONDecodeError as exc:
        raise DefinitionError([Problem(path, f"invalid JSON: {exc}")]) from None
    if not isinstance(data, Mapping):
        raise DefinitionError([Problem(path, "an override is a JSON object")])
    problems: list[Problem] = []
    kind = data.get("kind")
    if kind not in {k.value for k in OverrideKind}:
        problems.append(Problem(f"{path}.kind", f"{kind!r} is not kill or rollout"))
    variant = data.get("variant")
    if variant is not None and not isinstance(variant, str):
        problems.append(Problem(f"{path}.variant", "a variant name is a string"))
    percent = data.get("percent")
    if percent is not None and (isinstance(percent, bool) or not isinstance(percent, int | float)):
        problems.append(Problem(f"{path}.percent", "a percentage is a number"))
    unknown = sorted(set(data) - {"kind", "variant", "percent"})
    if unknown:
        problems.append(Problem(path, f"unknown field(s): {', '.join(unknown)}"))
    if problems:
        raise DefinitionError(problems)
    return Override(OverrideKind(str(kind)), variant, None if percent is None else float(percent))


def decode_state(raw: RawState) -> State:
    """Decode every part; DefinitionError lists every problem (definitions and overrides).

    Only shape is checked here; the engine (Snapshot.build) checks meaning."""
    problems: list[Problem] = []
    document: Any = None
    if raw.definitions is None:
        problems.append(Problem("definitions", "no definitions in Redis (push a file first)"))
    else:
        try:
            document = orjson.loads(raw.definitions)
        except orjson.JSONDecodeError as exc:
            problems.append(Problem("definitions", f"invalid JSON: {exc}"))
        else:
            if not isinstance(document, dict):
                problems.append(Problem("definitions", "the definitions are a JSON object"))
    overrides: dict[str, Override] = {}
    for key in sorted(raw.overrides):
        try:
            overrides[key] = decode_override(raw.overrides[key], f"overrides.{key}")
        except DefinitionError as exc:
            problems.extend(exc.problems)
    if problems:
        raise DefinitionError(problems, f"version {raw.version}")
    return State(raw.version, document, MappingProxyType(overrides))


def build_snapshot(
    raw: RawState, fractional: Scheme | str = Scheme.V3, limits: DefinitionLimits = DEFAULT_LIMITS
) -> Snapshot:
    """Decode and compile a raw state; DefinitionError lists every problem."""
    state = decode_state(raw)
    return Snapshot.build(
        state.definitions,
        version=state.version,
        fractional=fractional,
        overrides=state.overrides,
        limits=limits,
    )


@dataclass(frozen=True, slots=True)
class Change:
    """A write the audit stream records: enough to tell whether it touched a flag."""

    version: int
    actor: str
    action: str
    flag: str  # "" for a push (every flag)


# -- change messages -----------------------------------------------------------------------


class ChangeKind(StrEnum):
    DEFINITIONS = "definitions"
    OVERRIDE = "override"


@dataclass(frozen=True, slots=True)
class ChangeMessage:
    """A published change. For OVERRIDE, ``override`` None means the override was removed."""

    version: int
    kind: ChangeKind
    key: str | None = None
    override: Override | None = None

    def body(self) -> bytes:
        """The message without its version (``{"kind": ...}``): the write script, which
        alone knows the new version, puts it in front (``with_version``)."""
        out: dict[str, Any] = {"kind": str(self.kind)}
        if self.kind is ChangeKind.OVERRIDE:
            out["key"] = self.key
            out["override"] = None if self.override is None else self.override.to_json()
        return orjson.dumps(out)

    def to_json(self) -> bytes:
        return with_version(self.version, self.body())


def with_version(version: int, body: bytes) -> bytes:
    """``{"version": V, ...body}``: a message body with its version first."""
    return b'{"version":%d,' % version + body[1:]


def decode_message(data: bytes) -> ChangeMessage | None:
    """The message, or None when it cannot be trusted (the caller then reloads the state)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    version, kind = obj.get("version"), obj.get("kind")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return None
    if kind == ChangeKind.DEFINITIONS:
        return ChangeMessage(version, ChangeKind.DEFINITIONS)
    key = obj.get("key")
    if kind != ChangeKind.OVERRIDE or not isinstance(key, str):
        return None
    raw = obj.get("override")
    if raw is None:
        return ChangeMessage(version, ChangeKind.OVERRIDE, key, None)
    try:
        return ChangeMessage(version, ChangeKind.OVERRIDE, key, decode_override(raw, key))
    except DefinitionError:
        return None


# -- writes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    """One atomic change, applied only if the store is still at ``expected`` version.

    The new version is ``max(expected, floor) + 1``: ``floor`` (the highest version a live
    edge reports) lets a push re-seed a Redis that restarted empty above what edges serve.
    ``override`` is used for OVERRIDE writes (None removes); ``definitions`` for the other.
    """

    expected: int
    kind: ChangeKind
    actor: str
    action: str
    flag: str = ""
    before: str = ""
    after: str = ""
    definitions: bytes = b""
    override: Override | None = None
    floor: int = 0


@dataclass(frozen=True, slots=True)
class WriteResult:
    """``ok`` False: the version had moved to ``version`` (validate again and retry)."""

    ok: bool
    version: int
    ts_ms: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What an edge reports about itself, every second and after every change it applies."""

    id: str
    host: str
    pid: int
    version: int
    applied_at: float  # Unix seconds when ``version`` was installed
    stale: bool  # serving a last-known-good file, or cut off from Redis
    redis_version: int  # the version this edge last saw in Redis
    error: str | None = None  # the last state it refused, and why
    ts: float = 0.0

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "host": self.host,
                "pid": self.pid,
                "version": self.version,
                "applied_at": self.applied_at,
                "stale": self.stale,
                "redis_version": self.redis_version,
                "error": self.error,
                "ts": self.ts,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Heartbeat | None:
        try:
            obj = orjson.loads(data)
            return cls(
                id=str(obj["id"]),
                host=str(obj["host"]),
                pid=int(obj["pid"]),
                version=int(obj["version"]),
                applied_at=float(obj["applied_at"]),
                stale=bool(obj["stale"]),
                redis_version=int(obj["redis_version"]),
                error=None if obj.get("error") is None else str(obj["error"]),
                ts=float(obj.get("ts", 0.0)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


# -- the seam the edge uses ----------------------------------------------------------------


class Resubscribed:
    """A subscription was (re)confirmed after a reconnect: messages may have been missed."""

    def __repr__(self) -> str:
        return "RESUBSCRIBED"


RESUBSCRIBED: Final = Resubscribed()


class Subscription(Protocol):
    async def next(self, timeout: float) -> bytes | Resubscribed | None:
        """The next message, RESUBSCRIBED, or None after ``timeout`` seconds of quiet.
        Raises StoreUnavailable when the connection is lost for good."""


class Plane(Protocol):
    """The asynchronous store an edge synchronises from (Redis, or the in-memory twin)."""

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Subscribe to the change channel; entered only once Redis confirmed it."""

    async def load(self) -> RawState:
        """Version, definitions and overrides, read atomically; DefinitionError for a key
        of the wrong type, a version that is not one, or definitions over the size limit."""

    async def version(self) -> int:
        """Redis's version; DefinitionError when the key holds something else."""

    async def read_change(self) -> ChangeCheck:
        """Version and the last change record, read atomically (one MGET)."""

    async def heartbeat(self, beat: Heartbeat) -> None:
        """Refresh this edge's heartbeat key (it expires after HEARTBEAT_TTL_MS)."""

    async def remove_heartbeat(self, edge_id: str) -> None:
        """Delete an edge's heartbeat (on a clean stop); never raises."""

    async def add_usage(
        self, day: str, counts: Mapping[tuple[str, str], int], ttl_seconds: int
    ) -> None:
        """Add evaluation counts to ``day``'s usage (one attempt: a retry could count twice)."""

    async def close(self) -> None: ...
