"""One managed environment as the admin service sees it: the store (RedisAdmin, blocking,
run on worker threads), the last state it read, and the writes, all through
store/writes.py.

    Environment.view()   the current View: raw state, its Snapshot, one row per flag
                         (rebuilt only when Redis's version moved); Redis down: the last
                         View, marked stale, with when it was read
    Environment.edges()  every live edge against Redis's version (edge_rows)
    Environment.write(fn, ...)   a writes.* operation; StoreUnavailable when Redis is down
    EdgeFeed             one poller per environment for the server-sent events of the edge
                         pages; runs only while someone listens

Nothing here is HTTP: api.py and ui.py turn these into answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

import orjson

from ..errors import DefinitionError, StoreUnavailable
from ..lifecycle import StaleReport, stale_report
from ..logs import event
from ..model import Override
from ..snapshot import Snapshot
from ..store import writes
from ..store.plane import RawState, build_snapshot, decode_override
from ..store.redis import AuditEntry, RedisAdmin
from ..store.usage import stale_inputs

log = logging.getLogger("flagedge.admin")

SAMPLE_KEYS = tuple(f"sample-{i}" for i in range(64))  # "the value most contexts get"
EDGE_POLL = 0.05  # seconds between edge reads while a page listens


@dataclass(frozen=True, slots=True)
class FlagRow:
    """One line of the flags page."""

    key: str
    kind: str
    owner: str
    expires: str
    state: str
    override: str  # "" | "killed (variant x)" | "rollout x 25%"
    typical: str  # the value most sampled contexts get, as JSON
    description: str

    def to_json(self) -> dict[str, Any]:
        # A shallow copy of the fields, not dataclasses.asdict: asdict deep-copies each one,
        # which made the 1,000-row GET /flags five times slower (benchmarks/admin.py: p50
        # 2.9 -> 14 ms).
        return {name: getattr(self, name) for name in _ROW_FIELDS}


_ROW_FIELDS = tuple(f.name for f in fields(FlagRow))


@dataclass(frozen=True, slots=True)
class View:
    """What the service last read from one environment."""

    version: int
    raw: RawState
    document: dict[str, Any]
    snapshot: Snapshot | None
    problems: tuple[str, ...]  # why the state does not build (corrupt data in Redis)
    rows: tuple[FlagRow, ...]
    read_at: float
    stale: bool = False
    error: str = ""

    def flag(self, key: str) -> dict[str, Any] | None:
        flags = self.document.get("flags")
        found = flags.get(key) if isinstance(flags, dict) else None
        return found if isinstance(found, dict) else None

    def override(self, key: str) -> Override | None:
        raw = self.raw.overrides.get(key)
        if raw is None:
            return None
        try:
            return decode_override(raw, f"overrides.{key}")
        except DefinitionError:
            return None


def describe_override(ov: Override | None) -> str:
    if ov is None:
        return ""
    if ov.kind.value == "kill":
        return f"killed ({ov.variant})" if ov.variant else "killed (caller's default)"
    return f"rollout {ov.variant} {ov.percent:g}%"


def _meta(definition: dict[str, Any], name: str) -> str:
    meta = definition.get("metadata")
    value = meta.get(name) if isinstance(meta, dict) else None
    return "" if value is None else str(value)


def _typicals(snap: Snapshot | None, keys: list[str], now: int) -> dict[str, str]:
    """The value most of SAMPLE_KEYS get, per flag: one batch evaluation (columnar) for
    all flags, so that 1,000 flags cost milliseconds, not a loop of calls."""
    if snap is None or not keys:
        return {}
    known = [k for k in keys if k in snap.flags]
    batch = snap.evaluate_batch(known, [{"targetingKey": tk} for tk in SAMPLE_KEYS], now)
    out: dict[str, str] = {}
    width = len(known)
    for f, key in enumerate(known):
        counts: Counter[int] = Counter(
            batch.variant_index[c * width + f] for c in range(len(SAMPLE_KEYS))
        )
        index = counts.most_common(1)[0][0]
        value = batch.value_tables[f][index] if index >= 0 else None
        out[key] = orjson.dumps(value).decode() if index >= 0 else "(default)"
    return out


def _row(key: str, definition: dict[str, Any], ov: Override | None, typical: str) -> FlagRow:
    return FlagRow(
        key=str(key),
        kind=_meta(definition, "kind"),
        owner=_meta(definition, "owner"),
        expires=_meta(definition, "expires"),
        state=str(definition.get("state", "")),
        override=describe_override(ov),
        typical=typical,
        description=_meta(definition, "description"),
    )


def _override(raw: RawState, key: str) -> Override | None:
    ov_raw = raw.overrides.get(key)
    if ov_raw is None:
        return None
    try:
        return decode_override(ov_raw, key)
    except DefinitionError:
        return None


def build_view(raw: RawState, now: float) -> View:
    """Decode and compile what Redis holds; corrupt data still gives a View, with problems."""
    try:
        document = orjson.loads(raw.definitions) if raw.definitions else {}
    except orjson.JSONDecodeError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    problems: tuple[str, ...] = ()
    snap: Snapshot | None = None
    if raw.definitions is None:
        problems = ("no definitions pushed to this environment yet",)
    else:
        try:
            snap = build_snapshot(raw)
        except DefinitionError as exc:
            problems = tuple(str(p) for p in exc.problems)
    flags = document.get("flags") if isinstance(document.get("flags"), dict) else {}
    assert isinstance(flags, dict)
    keys = [k for k, d in flags.items() if isinstance(d, dict)]
    typical = _typicals(snap, keys, int(now))
    rows = [_row(k, flags[k], _override(raw, k), typical.get(k, "")) for k in keys]
    return View(raw.version, raw, document, snap, problems, tuple(rows), now)


def with_overrides(old: View, raw: RawState, now: float) -> View | None:
    """A new View when only overrides changed since ``old`` (a kill, a restore, a rollout
    override): the compiled snapshot is rewrapped, not rebuilt, and only the changed flags'
    rows are recomputed. None when the definitions changed too."""
    if old.snapshot is None or raw.definitions != old.raw.definitions:
        return None
    changed = {k for k in set(raw.overrides) | set(old.raw.overrides)
               if raw.overrides.get(k) != old.raw.overrides.get(k)}  # fmt: skip
    updates: dict[str, Override | None] = {}
    for key in changed:
        if key in raw.overrides:
            ov = _override(raw, key)
            if ov is None:
                return None  # corrupt: the full build reports it
            updates[key] = ov
        else:
            updates[key] = None
    try:
        snap = old.snapshot.with_overrides(updates, raw.version)
    except DefinitionError:
        return None
    flags = old.document.get("flags") or {}
    typical = _typicals(snap, [k for k in changed if k in snap.flags], int(now))
    rows = tuple(
        _row(r.key, flags[r.key], _override(raw, r.key), typical.get(r.key, r.typical))
        if r.key in changed
        else r
        for r in old.rows
    )
    return View(raw.version, raw, old.document, snap, old.problems, rows, now)


class Environment:
    """One environment: its store and what was last read from it."""

    def __init__(self, name: str, admin: RedisAdmin) -> None:
        self.name = name
        self.admin = admin
        self._view: View | None = None
        self._lock = threading.Lock()  # one rebuild at a time; readers never wait on Redis
        self.feed = EdgeFeed(self)

    # reads -----------------------------------------------------------------------------

    def _refresh(self) -> View:
        try:
            version = self.admin.version()
            current = self._view
            if current is not None and current.version == version and not current.stale:
                return current
            with self._lock:
                current = self._view
                if current is not None and current.version == version and not current.stale:
                    return current
                raw, now = self.admin.read(), time.time()
                view = (None if current is None else with_overrides(current, raw, now)) or (
                    build_view(raw, now)
                )
                self._view = view
                return view
        except StoreUnavailable as exc:
            last = self._view
            if last is None:
                raise
            if not last.stale:
                event(log, logging.WARNING, "redis", "%s: %s", self.name, exc, env=self.name)
            stale = View(
                last.version,
                last.raw,
                last.document,
                last.snapshot,
                last.problems,
                last.rows,
                last.read_at,
                True,
                str(exc),
            )
            self._view = stale
            return stale

    async def view(self) -> View:
        """The current state (StoreUnavailable only when Redis was never reached)."""
        return await asyncio.to_thread(self._refresh)

    async def edges(self) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            version = self.admin.version()
            rows = writes.edge_rows(version, self.admin.edges())
            return {
                "env": self.name,
                "version": version,
                "converged": all(r["converged"] for r in rows),
                "edges": rows,
                "redis_time": time.time(),
            }

        return await asyncio.to_thread(read)

    async def audit(
        self, limit: int, flag: str | None, actor: str | None, action: str | None
    ) -> list[AuditEntry]:
        def read() -> list[AuditEntry]:
            if not actor and not action:
                return self.admin.audit(limit, flag)
            # Filters beyond the flag: read further back and keep the matches.
            found = self.admin.audit(min(limit * 20, 10_000), flag)
            keep = [
                e
                for e in found
                if (not actor or actor.lower() in e.actor.lower())
                and (not action or e.action == action)
            ]
            return keep[:limit]

        return await asyncio.to_thread(read)

    async def stale_report(self, today: date | None, days: int) -> StaleReport:
        when = today or datetime.now(UTC).date()

        def read() -> StaleReport:
            snap, usage = stale_inputs(self.admin, when, days)
            flags = {key: flag.metadata for key, flag in snap.flags.items()}
            return stale_report(flags, f"env {self.name!r}", when, days, usage)

        return await asyncio.to_thread(read)

    # writes ----------------------------------------------------------------------------

    async def write(
        self, operation: Callable[..., writes.Outcome], *args: Any, **kwargs: Any
    ) -> writes.Outcome:
        done = await asyncio.to_thread(operation, self.admin, *args, **kwargs)
        self.feed.poke()
        return done

    def close(self) -> None:
        self.admin.close()


@dataclass
class EdgeFeed:
    """Edge rows for server-sent events: polled while at least one page listens, every
    EDGE_POLL seconds, and at once after a write. Each listener gets every change."""

    environment: Environment
    listeners: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event | None = None
    _last: bytes = b""

    def poke(self) -> None:
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # from a worker thread: the loop's call
                loop = self._task.get_loop() if self._task is not None else None
                if loop is not None:
                    loop.call_soon_threadsafe(wake.set)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)
        self.listeners.add(queue)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._last = b""
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            yield queue
        finally:
            self.listeners.discard(queue)
            if not self.listeners and self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
                self._task = None

    async def _run(self) -> None:
        assert self._wake is not None
        while self.listeners:
            try:
                body = await self.environment.edges()
                body["ok"] = True
            except StoreUnavailable as exc:
                body = {"ok": False, "env": self.environment.name, "error": str(exc)}
            # Send changes only (redis_time always moves).
            key = orjson.dumps({k: v for k, v in body.items() if k != "redis_time"})
            if key != self._last:
                self._last = key
                for queue in list(self.listeners):
                    if queue.full():
                        with contextlib.suppress(asyncio.QueueEmpty):
                            queue.get_nowait()  # a slow page: drop its oldest update
                    queue.put_nowait(body)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EDGE_POLL):
                    await self._wake.wait()
            self._wake.clear()
