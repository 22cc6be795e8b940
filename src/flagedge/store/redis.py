"""The one seam to Redis: connections (URL, ACL, TLS, Sentinel), the atomic write script,
the atomic read, pub/sub and heartbeats. Keys and messages are described in store/plane.py.

    RedisPlane   asyncio, for edges (implements plane.Plane)
    RedisAdmin   blocking, for the ops CLI: read, write (one Lua script), edges, audit

Every failure to reach Redis becomes StoreUnavailable; a value of the wrong Redis type (a
hand-made mess), a version that is not one, or definitions over the size limit become a
DefinitionError naming the key, like any other corrupt data. Addresses are shown without
their credentials (``redact``), in messages and in logs. A command the ACL user may not run
(NOPERM) becomes StoreRefused for the ops CLI (it names the user's missing right; README,
"Redis with least privilege"); an edge reports it as StoreUnavailable, with the same words,
and keeps serving what it has.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, RedisError, ResponseError
from redis.retry import Retry

from ..definitions import DEFAULT_LIMITS
from ..errors import DefinitionError, Problem, StoreError, StoreRefused, StoreUnavailable
from .plane import (
    HEARTBEAT_TTL_MS,
    MAX_VERSION,
    RESUBSCRIBED,
    Change,
    ChangeCheck,
    ChangeKind,
    ChangeMessage,
    Heartbeat,
    Keys,
    RawState,
    Resubscribed,
    Subscription,
    Write,
    WriteResult,
    encode_override,
    parse_usage_field,
    parse_version,
    usage_field,
)

AUDIT_MAXLEN: Final = 10_000

# One script per write: nothing can interleave between the version check and the publish,
# so a message's version is exactly the state it describes. TIME makes the audit timestamp
# the server's, so every writer's entries sort on one clock.
#
# Nothing is changed until every check passed (a script that fails half-way is not undone):
# each key must hold its type or nothing (-3), the version must be a whole number below
# 2^53 (-1), and the new one must stay below it too (-2), so Lua's doubles never round it.
# The message is also SET as the change record, which edges check messages against.
WRITE_LUA: Final = """
local want = {'string', 'string', 'hash', 'stream', 'string'}
for i = 1, 5 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= want[i] then
    return {-3, KEYS[i], t}
  end
end
local raw = redis.call('GET', KEYS[1]) or '0'
local max = tonumber(ARGV[14])
if not string.match(raw, '^%d+$') or string.len(raw) > 16 or tonumber(raw) > max then
  return {-1, raw, '0'}
end
local current = tonumber(raw)
if current ~= tonumber(ARGV[1]) then
  return {0, raw, '0'}
end
local base = math.max(current, tonumber(ARGV[2]))
if base >= max then
  return {-2, string.format('%d', base), '0'}
end
local version = base + 1
local v = string.format('%d', version)
redis.call('SET', KEYS[1], v)
local body = ARGV[12]
if ARGV[3] == 'definitions' then
  redis.call('SET', KEYS[2], ARGV[5])
elseif ARGV[5] == '' then
  redis.call('HDEL', KEYS[3], ARGV[4])
else
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
end
if version ~= current + 1 then
  -- Re-seeded above the edges (floor): this state is no small step from theirs.
  body = ARGV[13]
end
local now = redis.call('TIME')
local ts = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[11], '*',
  'actor', ARGV[7], 'action', ARGV[8], 'flag', ARGV[4],
  'before', ARGV[9], 'after', ARGV[10], 'version', v, 'ts', ts)
-- The message is Python's encoding (ChangeMessage.body) with the new version put in front.
local message = '{"version":' .. v .. ',' .. string.sub(body, 2)
redis.call('SET', KEYS[5], message)
redis.call('PUBLISH', ARGV[6], message)
return {1, v, ts}
"""


# -- where Redis is --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A Redis to connect to: a ``redis://``/``rediss://``/``unix://`` URL, or Sentinel.

    ``redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/DB]`` names a
    Sentinel group; the user and password are the data nodes' (ACL), and are also offered to
    the sentinels unless ``sentinel_password`` (the sentinel-password setting) sets theirs.
    """

    url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    username: str | None = None
    password: str | None = None
    db: int = 0
    sentinel_password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __str__(self) -> str:
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel {hosts} master {self.master}"
        parts = urlsplit(self.url or "")
        host = parts.hostname or parts.path
        return f"{parts.scheme}://{host}{'' if parts.port is None else f':{parts.port}'}"


def redact(url: str) -> str:
    """``url`` as it may be shown: user and password (and any query) replaced by ***."""
    scheme, sep, rest = url.partition("://")
    _credentials, at, where = rest.rpartition("@") if sep else url.rpartition("@")
    if not at:
        where = rest if sep else url
    where, question, _query = where.partition("?")
    shown = ("***@" if at else "") + where + ("?***" if question else "")
    return f"{scheme}://{shown}" if sep else shown


def _hosts(spec: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in spec.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{item.strip()!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    return tuple(out)


def parse_target(
    url: str,
    sentinel: str | None = None,
    master: str | None = None,
    *,
    sentinel_password: str | None = None,
) -> Target:
    """``--redis URL`` plus optional ``--sentinel h:p,... --sentinel-master NAME``;
    ValueError with a readable message when they make no sense."""
    target = _parse_target(url, sentinel, master)
    if sentinel_password:
        target = dataclasses.replace(target, sentinel_password=sentinel_password)
    return target


def _parse_target(url: str, sentinel: str | None, master: str | None) -> Target:
    if sentinel:
        if not master:
            raise ValueError("--sentinel needs --sentinel-master NAME")
        parts = urlsplit(url) if url else None
        return Target(
            sentinels=_hosts(sentinel),
            master=master,
            username=unquote(parts.username) if parts and parts.username else None,
            password=unquote(parts.password) if parts and parts.password else None,
            db=int(parts.path.strip("/") or 0) if parts and parts.path.strip("/") else 0,
        )
    if url.startswith("redis+sentinel://"):
        rest = url[len("redis+sentinel://") :]
        credentials, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        names = [p for p in path.split("/") if p]
        if not names:
            raise ValueError("a redis+sentinel:// URL ends with /MASTER_NAME")
        user, _, password = credentials.partition(":")
        return Target(
            sentinels=_hosts(hosts),
            master=names[0],
            username=unquote(user) or None,
            password=unquote(password) or None,
            db=int(names[1]) if len(names) > 1 else 0,
        )
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            f"{redact(url)!r} is not a redis://, rediss://, unix:// or redis+sentinel:// URL"
        )
    if not url.startswith("unix://"):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError(f"{redact(url)!r} does not give a valid host and port") from None
        if not parts.hostname:
            raise ValueError(f"{redact(url)!r} names no host")
    return Target(url=url)


_TIMEOUTS: Final = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


def _sentinel_kwargs(target: Target) -> dict[str, Any]:
    password = target.sentinel_password or target.password
    kwargs: dict[str, Any] = dict(_TIMEOUTS)
    if password:
        kwargs["password"] = password
        if target.username and not target.sentinel_password:
            kwargs["username"] = target.username
    return kwargs


def async_client(target: Target) -> redis.asyncio.Redis:
    # One quick retry covers a pooled connection that died with a restarted Redis; longer
    # outages surface at once so that the synchroniser's own backoff (with jitter) decides.
    common: dict[str, Any] = {**_TIMEOUTS, "retry": Retry(NoBackoff(), 1), **target.options}
    if target.sentinels:
        group = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels),
            sentinel_kwargs=_sentinel_kwargs(target),
            username=target.username,
            password=target.password,
            db=target.db,
            **common,
        )
        client: redis.asyncio.Redis = group.master_for(target.master)
        return client
    assert target.url is not None
    return redis.asyncio.Redis.from_url(target.url, **common)


def sync_client(target: Target) -> redis.Redis:
    common: dict[str, Any] = {**_TIMEOUTS, "retry": Retry(NoBackoff(), 1), **target.options}
    if target.sentinels:
        group = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels),
            sentinel_kwargs=_sentinel_kwargs(target),
            username=target.username,
            password=target.password,
            db=target.db,
            **common,
        )
        sync: redis.Redis = group.master_for(target.master)  # type: ignore[no-untyped-call]
        return sync
    assert target.url is not None
    return redis.Redis.from_url(target.url, **common)


def _unavailable(target: Target, exc: BaseException) -> StoreUnavailable:
    if isinstance(exc, NoPermissionError):
        return StoreUnavailable(_refusal(target, exc))
    return StoreUnavailable(f"Redis at {target} is unreachable: {exc}")


def _refusal(target: Target, exc: NoPermissionError) -> str:
    # Redis's NOPERM text names the command, key or channel, never a password.
    return (
        f"Redis at {target} refused the command: {exc} (the Redis user lacks this right; "
        "README, 'Redis with least privilege', lists what edges and writers need)"
    )


def _permitted(replies: list[Any]) -> list[Any]:
    """A MULTI's replies, or the NOPERM among them raised (not mistaken for corrupt data)."""
    for reply in replies:
        if isinstance(reply, NoPermissionError):
            raise reply
    return replies


def _raw_state(
    version: Any, definitions: Any, overrides: Any, size: Any = None, max_bytes: int = 0
) -> RawState:
    """Build a RawState from a MULTI's replies; a wrong-type key, a version that is not
    one, or definitions of ``size`` bytes over ``max_bytes`` (when given) are corrupt data."""
    problems = [
        Problem(name, f"holds the wrong Redis type: {reply}")
        for name, reply in (
            ("version", version),
            ("definitions", definitions),
            ("overrides", overrides),
        )
        if isinstance(reply, ResponseError)
    ]
    number = 0
    if not isinstance(version, ResponseError):
        try:
            number = parse_version(version)
        except DefinitionError as exc:
            problems.extend(exc.problems)
    if max_bytes and isinstance(size, int) and size > max_bytes:
        problems.append(
            Problem(
                "definitions",
                f"{size} bytes, over the limit of {max_bytes} bytes (max-definitions-bytes)",
            )
        )
    if problems:
        raise DefinitionError(problems, "Redis")
    if max_bytes and not definitions:
        definitions = None  # GETRANGE reads a missing key as empty: never pushed
    decoded = {
        (k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): v
        for k, v in (overrides or {}).items()
    }
    return RawState(number, definitions, MappingProxyType(decoded))


# -- the edge's side (asyncio) -------------------------------------------------------------


class RedisPlane:
    """plane.Plane on a real Redis. Definitions larger than ``max_bytes`` are refused after
    reading no more than that (STRLEN and GETRANGE in the same MULTI)."""

    def __init__(
        self,
        target: Target,
        env: str,
        *,
        client: redis.asyncio.Redis | None = None,
        max_bytes: int = DEFAULT_LIMITS.max_bytes,
    ):
        self.target = target
        self.keys = Keys(env)
        self.max_bytes = max_bytes
        self._client = client or async_client(target)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        pubsub = self._client.pubsub()
        try:
            try:
                await pubsub.subscribe(self.keys.channel)
                # Wait for Redis to confirm: only then can a full load miss nothing.
                while True:
                    message = await pubsub.get_message(timeout=_TIMEOUTS["socket_timeout"])
                    if message is None:
                        raise StoreUnavailable(f"Redis at {self.target} did not confirm SUBSCRIBE")
                    if message["type"] == "subscribe":
                        break
            except (RedisError, OSError) as exc:
                raise _unavailable(self.target, exc) from exc
            yield _RedisSubscription(pubsub, self.target)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``command``; after a connection error, once more on fresh connections (after a
        Redis restart or a CLIENT KILL every pooled connection is dead at once)."""
        try:
            return await command()
        except (RedisConnectionError, OSError):
            with contextlib.suppress(Exception):
                await self._client.connection_pool.disconnect(inuse_connections=False)
        except RedisError as exc:
            raise _unavailable(self.target, exc) from exc
        try:
            return await command()
        except (RedisError, OSError) as exc:
            raise _unavailable(self.target, exc) from exc

    async def load(self) -> RawState:
        keys = self.keys

        async def read() -> list[Any]:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(keys.version)
                pipe.strlen(keys.definitions)
                pipe.getrange(keys.definitions, 0, self.max_bytes)
                pipe.hgetall(keys.overrides)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
                return _permitted(replies)

        version, size, definitions, overrides = await self._call(read)
        if isinstance(size, ResponseError):
            definitions = size
        return _raw_state(version, definitions, overrides, size, self.max_bytes)

    async def version(self) -> int:
        try:
            raw = await self._call(lambda: self._client.get(self.keys.version))
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, ResponseError):  # WRONGTYPE: corrupt, not down
                raise DefinitionError(
                    [Problem("version", f"holds the wrong Redis type: {exc.__cause__}")], "Redis"
                ) from None
            raise
        return parse_version(raw)

    async def read_change(self) -> ChangeCheck:
        # One MGET: atomic, and the cheapest read that can confirm a message (the fast
        # path pays for it on every flip).
        keys = self.keys
        try:
            version, record = await self._call(lambda: self._client.mget(keys.version, keys.change))
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, ResponseError):  # a key of the wrong type: unconfirmed
                return ChangeCheck(0, None)
            raise
        try:
            number = parse_version(version)
        except DefinitionError:
            number = 0  # unconfirmed; the reload that follows reports the key
        return ChangeCheck(number, record)

    async def heartbeat(self, beat: Heartbeat) -> None:
        key, value = self.keys.edge(beat.id), beat.to_json()
        await self._call(lambda: self._client.set(key, value, px=HEARTBEAT_TTL_MS))

    async def add_usage(
        self, day: str, counts: Mapping[tuple[str, str], int], ttl_seconds: int
    ) -> None:
        """Add evaluation counts to ``day``'s usage hash, in one MULTI. One attempt only: a
        retry after a lost reply could count twice."""
        key, since = self.keys.usage(day), self.keys.usage_since
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for (flag, variant), n in counts.items():
                    pipe.hincrby(key, usage_field(flag, variant), n)
                if counts:
                    pipe.expire(key, ttl_seconds)
                pipe.set(since, day, nx=True)
                pipe.expire(since, ttl_seconds)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            with contextlib.suppress(Exception):
                await self._client.connection_pool.disconnect(inuse_connections=False)
            raise _unavailable(self.target, exc) from exc

    async def remove_heartbeat(self, edge_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.delete(self.keys.edge(edge_id))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()


class _RedisSubscription:
    def __init__(self, pubsub: Any, target: Target) -> None:
        self._pubsub = pubsub
        self._target = target

    async def next(self, timeout: float) -> bytes | Resubscribed | None:
        try:
            message = await self._pubsub.get_message(timeout=max(0.0, timeout))
        except (RedisError, OSError) as exc:
            raise _unavailable(self._target, exc) from exc
        if message is None:
            return None
        if message["type"] == "subscribe":
            # redis-py reconnected and resubscribed on its own: something may be lost.
            return RESUBSCRIBED
        if message["type"] == "message":
            data: bytes = message["data"]
            return data
        return None


# -- the ops side (blocking) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    ts_ms: int
    version: int
    actor: str
    action: str
    flag: str
    before: str
    after: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts_ms,
            "version": self.version,
            "actor": self.actor,
            "action": self.action,
            "flag": self.flag,
            "before": self.before,
            "after": self.after,
        }


class RedisAdmin:
    """What the ops CLI needs from Redis, blocking."""

    def __init__(self, target: Target, env: str, *, client: redis.Redis | None = None) -> None:
        self.target = target
        self.keys = Keys(env)
        self._client = client or sync_client(target)
        self._write = self._client.register_script(WRITE_LUA)

    @contextlib.contextmanager
    def _calls(self) -> Iterator[None]:
        try:
            yield
        except NoPermissionError as exc:
            raise StoreRefused(_refusal(self.target, exc)) from None
        except ResponseError as exc:  # Redis answered, and said no (a wrong type...)
            raise StoreError(f"Redis at {self.target} refused: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise _unavailable(self.target, exc) from exc

    def read(self) -> RawState:
        with self._calls():
            pipe = self._client.pipeline(transaction=True)
            pipe.get(self.keys.version)
            pipe.get(self.keys.definitions)
            pipe.hgetall(self.keys.overrides)
            replies = _permitted(pipe.execute(raise_on_error=False))
        return _raw_state(*replies)

    def version(self) -> int:
        """Redis's version; DefinitionError when the key holds anything else."""
        try:
            with self._calls():
                raw = self._client.get(self.keys.version)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise DefinitionError(
                [Problem("version", f"cannot be read as a version: {exc.__cause__}")], "Redis"
            ) from None
        return parse_version(raw)

    def write(self, w: Write) -> WriteResult:
        if w.kind is ChangeKind.DEFINITIONS:
            value = w.definitions
        else:
            value = b"" if w.override is None else encode_override(w.override)
        k = self.keys
        with self._calls():
            code, version, ts = self._write(
                keys=[k.version, k.definitions, k.overrides, k.audit, k.change],
                args=[
                    w.expected,
                    w.floor,
                    str(w.kind),
                    w.flag,
                    value,
                    k.channel,
                    w.actor,
                    w.action,
                    w.before,
                    w.after,
                    AUDIT_MAXLEN,
                    ChangeMessage(0, w.kind, w.flag, w.override).body(),
                    ChangeMessage(0, ChangeKind.DEFINITIONS).body(),
                    MAX_VERSION,
                ],
            )
        code = int(code)
        if code == -1:
            raise DefinitionError(
                [Problem("version", f"{_text(version)!r} is not a version (0 to 2^53-1)")],
                "Redis",
            )
        if code == -2:
            raise DefinitionError(
                [
                    Problem(
                        "version",
                        f"the next version after {_text(version)} would pass 2^53-1, beyond "
                        "which versions are no longer exact; nothing written",
                    )
                ],
                "Redis",
            )
        if code == -3:
            name = _text(version).removeprefix(k.prefix)
            raise DefinitionError(
                [Problem(name, f"holds a Redis {_text(ts)}; nothing written")], "Redis"
            )
        return WriteResult(code == 1, int(version), int(ts))

    def edges(self) -> list[Heartbeat]:
        """Every live edge's latest heartbeat (expired ones are gone), sorted by id."""
        with self._calls():
            names = list(self._client.scan_iter(match=self.keys.edge_pattern, count=1000))
            values: Sequence[Any] = self._client.mget(names) if names else []
        beats = [Heartbeat.from_json(v) for v in values if v is not None]
        return sorted((b for b in beats if b is not None), key=lambda b: b.id)

    def audit(self, limit: int, flag: str | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (for ``flag`` only, when given), newest first."""
        out: list[AuditEntry] = []
        start = "+"
        with self._calls():
            while len(out) < limit:
                page = self._client.xrevrange(self.keys.audit, max=start, min="-", count=500)
                if not page:
                    break
                for entry_id, fields in page:
                    entry = _audit_entry(entry_id, fields)
                    if flag is None or entry.flag == flag:
                        out.append(entry)
                        if len(out) == limit:
                            break
                if len(page) < 500:
                    break
                start = "(" + _text(page[-1][0])
        return out

    def changes_since(self, version: int) -> list[Change] | None:
        """Every audited write after ``version``, oldest first; None when the stream (trimmed
        at AUDIT_MAXLEN) may no longer hold them all."""
        out: list[Change] = []
        start = "+"
        with self._calls():
            while True:
                page = self._client.xrevrange(self.keys.audit, max=start, min="-", count=200) or []
                for entry_id, fields in page:
                    entry = _audit_entry(entry_id, fields)
                    if entry.version <= version:
                        return out[::-1]
                    out.append(Change(entry.version, entry.actor, entry.action, entry.flag))
                if len(page) < 200:
                    complete = int(self._client.xlen(self.keys.audit)) < AUDIT_MAXLEN
                    return out[::-1] if complete else None
                start = "(" + _text(page[-1][0])

    def usage(
        self, days: Sequence[str]
    ) -> tuple[dict[str, dict[tuple[str, str], int]], str | None]:
        """Evaluation counts per day ({day: {(flag, variant): n}}) and the first day of usage
        reports (None when no edge has reported)."""
        with self._calls():
            pipe = self._client.pipeline(transaction=False)
            for day in days:
                pipe.hgetall(self.keys.usage(day))
            pipe.get(self.keys.usage_since)
            replies = pipe.execute()
        out: dict[str, dict[tuple[str, str], int]] = {}
        for day, reply in zip(days, replies[:-1], strict=True):
            counts: dict[tuple[str, str], int] = {}
            for raw_name, value in (reply or {}).items():
                name = parse_usage_field(raw_name)
                with contextlib.suppress(TypeError, ValueError):
                    if name is not None:
                        counts[name] = counts.get(name, 0) + int(value)
            out[day] = counts
        since = replies[-1]
        return out, None if since is None else _text(since)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _audit_entry(entry_id: Any, fields: Mapping[Any, Any] | None) -> AuditEntry:
    f = {_text(k): _text(v) for k, v in (fields or {}).items()}

    def number(name: str) -> int:
        try:
            return int(f.get(name, "0"))
        except ValueError:
            return 0

    return AuditEntry(
        id=_text(entry_id),
        ts_ms=number("ts"),
        version=number("version"),
        actor=f.get("actor", ""),
        action=f.get("action", ""),
        flag=f.get("flag", ""),
        before=f.get("before", ""),
        after=f.get("after", ""),
    )
