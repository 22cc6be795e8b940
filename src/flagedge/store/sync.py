"""The edge synchroniser: keeps a SnapshotHolder on the latest valid state in the store.

    connect ─► SUBSCRIBE (confirmed) ─► full load ─► install ─► messages, in order:
        override at exactly current+1            checked against Redis (one MULTI: version,
                                                 the last change record, the flag's override);
                                                 confirmed: the override READ is applied with
                                                 with_overrides (no recompile); else a reload
        version <= current                       ignored (duplicate, or older)
        anything else newer, a gap, definitions,
        an unreadable message, a resubscribe,
        a periodic version check that differs    full load
    connection lost ─► keep serving, back off (exponential, jittered), connect again

Reloads are coalesced: when one is due, the messages already waiting are taken first (a
reload reads the latest state, which covers them all), so a burst of garbage costs one
reload, not one each; a reload a message asks for first reads Redis's version alone, and
skips the full load when it is the one serving; a reload that finds the definitions it
serves (byte for byte) only applies the overrides, without recompiling. Lines about
unreadable messages are throttled (logs.Throttle).

Rules it never breaks:
- It never installs a version older than the one serving. A store that is *behind* (Redis
  restarted empty, or lost its last writes) is reported as ``redis_behind``; the edge keeps
  its newer state until the store moves past it (``flagedge push`` re-seeds above every
  live edge's version).
- Corrupt data (bad JSON, invalid definitions, an override naming no variant, a key of the
  wrong Redis type, a version that is not one, definitions over the size limit) is refused:
  logged with every problem (once, until it changes), reported in the heartbeat and
  /readyz, and the last good snapshot keeps serving; the edge stays connected.
- A message alone never changes what it serves: PUBLISH rights are not write rights.
- Every applied state is written to a last-known-good file (temp file, fsync, rename). An
  edge that starts while the store is unreachable serves that file, marked stale, and
  converges once the store answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..definitions import DEFAULT_LIMITS, DefinitionLimits
from ..errors import DefinitionError, StoreUnavailable
from ..hashing import Scheme
from ..logs import Throttle, event
from ..model import Override, OverrideKind
from ..snapshot import Snapshot, SnapshotHolder
from .lkg import read_lkg, write_lkg
from .plane import (
    RESUBSCRIBED,
    ChangeKind,
    ChangeMessage,
    Heartbeat,
    Plane,
    RawState,
    Resubscribed,
    Subscription,
    build_snapshot,
    decode_message,
    decode_override,
    encode_override,
)

log = logging.getLogger("flagedge.sync")

# Seconds the log line of a one-key change waits after the change is applied.
_QUIET = 0.005
# Seconds the heartbeat that reports an apply waits after it (applies within it share one).
_BEAT_DELAY = 0.01
# The last-known-good file is written once changes stop for _LKG_QUIET seconds, and at the
# latest _LKG_MAX_DELAY seconds after the first change it has not saved yet.
_LKG_QUIET = 0.1
_LKG_MAX_DELAY = 1.0
# Messages a due reload takes off the subscription first (it covers them); a bound keeps a
# flood from holding the reload back for ever.
_DRAIN_MAX = 10_000


def _problems(exc: DefinitionError) -> list[dict[str, str]]:
    return [{"path": p.path, "message": p.message} for p in exc.problems]


def _timed_build(
    raw: RawState, fractional: Scheme | str, limits: DefinitionLimits = DEFAULT_LIMITS
) -> tuple[Snapshot, float]:
    start = time.perf_counter()
    snap = build_snapshot(raw, fractional, limits)
    return snap, time.perf_counter() - start


def _summary(exc: DefinitionError) -> str:
    first = "; ".join(str(p) for p in exc.problems[:3])
    more = f" (+{len(exc.problems) - 3} more)" if len(exc.problems) > 3 else ""
    return f"{first}{more}"


# -- the synchroniser ----------------------------------------------------------------------


class EdgeSync:
    """Runs for the life of an edge; see the module docstring for what it guarantees."""

    def __init__(
        self,
        plane: Plane,
        holder: SnapshotHolder,
        *,
        env: str,
        edge_id: str,
        lkg_path: Path | None = None,
        fractional: Scheme | str = Scheme.V3,
        check_interval: float = 2.0,
        heartbeat_interval: float = 1.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        limits: DefinitionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.plane = plane
        self.limits = limits
        self.holder = holder
        self.env = env
        self.edge_id = edge_id
        self.lkg_path = lkg_path
        self.fractional = fractional
        self.check_interval = check_interval
        self.heartbeat_interval = heartbeat_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

        self.connected = False
        self.source = "none"  # "redis", "lkg" or "none": where the serving state came from
        self.redis_version = 0  # the latest version seen in the store
        self.redis_behind = False
        self.error: str | None = None
        self.applied_at = 0.0
        self.compile_seconds = 0.0  # building the serving snapshot took this long
        self.stale_since: float | None = None  # when it started serving unconfirmed state
        self._raw: RawState | None = None  # the serving state as stored (for the LKG file)
        self._rejected: int | None = None  # the store version last refused
        self._wanted: str | None = None  # why a reload is due (coalesced), or None
        self._wanted_by_message = False  # only messages asked: check the version first
        self._lines = Throttle(10.0)
        self._first_try = asyncio.Event()
        self._beat_now = asyncio.Event()
        self._beat_soon: asyncio.TimerHandle | None = None
        self._lkg_dirty = asyncio.Event()
        self._last_change = 0.0  # loop time of the last applied state (the LKG debounce)
        self._tasks: list[asyncio.Task[None]] = []
        self._session_ok = False  # the current session got as far as a confirmed SUBSCRIBE
        self._sessions = 0  # confirmed subscriptions so far (the first is not a reconnect)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, wait: float = 3.0) -> None:
        """Start synchronising; return once the first state is installed, or after ``wait``
        seconds without one, having fallen back to the last-known-good file if there is one."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="flagedge-sync"),
            loop.create_task(self._heartbeats(), name="flagedge-heartbeat"),
            loop.create_task(self._lkg_writer(), name="flagedge-lkg"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_try.wait(), wait)
        if self.holder.current is None and self.lkg_path is not None:
            await self._install_lkg(self.lkg_path)

    async def stop(self) -> None:
        if self._beat_soon is not None:
            self._beat_soon.cancel()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            done, alive = await asyncio.wait(self._tasks, timeout=5.0)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("the %s task had failed: %r", task.get_name(), task.exception())
            for task in alive:  # a bug, not a reason to hang a shutdown
                log.error("the %s task did not stop when cancelled", task.get_name())
        if self._lkg_dirty.is_set():  # an applied change the debounce had not saved yet
            self._lkg_dirty.clear()
            await self._save_lkg()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.plane.remove_heartbeat(self.edge_id), 1.0)
        await self.plane.close()

    @property
    def version(self) -> int:
        snap = self.holder.current
        return 0 if snap is None else snap.version

    @property
    def stale(self) -> bool:
        """Serving state the store has not confirmed: a last-known-good file, or any state
        while the store is unreachable."""
        return self.holder.current is not None and (self.source != "redis" or not self.connected)

    def _note_stale(self) -> None:
        """Keep ``stale_since`` in step with ``stale`` (called wherever either input moves)."""
        if not self.stale:
            self.stale_since = None
        elif self.stale_since is None:
            self.stale_since = time.time()

    def status(self) -> dict[str, Any]:
        """What /readyz reports."""
        return {
            "env": self.env,
            "edge": self.edge_id,
            "version": self.version,
            "source": self.source,
            "stale": self.stale,
            "connected": self.connected,
            "redis_version": self.redis_version,
            "redis_behind": self.redis_behind,
            "error": self.error,
        }

    def heartbeat(self) -> Heartbeat:
        host = self.edge_id.partition("/")[0]
        return Heartbeat(
            id=self.edge_id,
            host=host or socket.gethostname(),
            pid=os.getpid(),
            version=self.version,
            applied_at=self.applied_at,
            stale=self.stale,
            redis_version=self.redis_version,
            error=self.error,
            ts=time.time(),
        )

    # -- the connection loop ------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
            except StoreUnavailable as exc:
                if self.connected or failures == 0:
                    event(
                        log,
                        logging.WARNING,
                        "redis_unavailable",
                        "Redis unavailable (%s); still serving version %d%s, reconnecting",
                        exc,
                        self.version,
                        " (stale)" if self.holder.current is not None else "",
                        error=str(exc),
                        version=self.version,
                    )
                self.connected = False
                self._note_stale()
                self._first_try.set()
                if self._session_ok:
                    failures = 0
                delay = min(self.backoff_cap, self.backoff_base * 2**failures)
                failures += 1
                # Jitter, so that a fleet of edges does not reconnect in lockstep.
                await asyncio.sleep(random.uniform(delay / 2, delay))
            except Exception:  # a bug: log it, never stop serving
                log.exception("synchroniser failed; restarting it")
                self.connected = False
                self._note_stale()
                self._first_try.set()
                await asyncio.sleep(self.backoff_cap)

    async def _session(self) -> None:
        self._session_ok = False
        loop = asyncio.get_running_loop()
        async with self.plane.subscribe() as sub:
            if not self.connected:
                again = self._sessions > 0
                event(
                    log,
                    logging.INFO,
                    "reconnect" if again else "connect",
                    "%s to Redis changes for env %r",
                    "resubscribed" if again else "subscribed",
                    self.env,
                    env=self.env,
                    version=self.version,
                )
            self._sessions += 1
            self.connected = True
            self._session_ok = True
            self._wanted = None
            await self._reload("subscribed")
            self._note_stale()
            self._first_try.set()
            next_check = loop.time() + self.check_interval
            while True:
                item = await sub.next(max(0.0, next_check - loop.time()))
                if item is not None:
                    await self._take(item)
                if self._wanted is not None:
                    await self._drain(sub)
                    why, by_message = self._wanted, self._wanted_by_message
                    self._wanted = None
                    await self._reload(why, check_first=by_message)
                if loop.time() >= next_check:
                    await self._check_version()
                    next_check = loop.time() + self.check_interval

    async def _take(self, item: bytes | Resubscribed) -> None:
        if item is RESUBSCRIBED:
            self._want("resubscribed", by_message=False)
        elif isinstance(item, bytes):
            await self._on_message(item)

    def _want(self, why: str, *, by_message: bool = True) -> None:
        """A reload is due; with others already due, one covers them all."""
        if self._wanted is None:
            self._wanted, self._wanted_by_message = why, by_message
        else:
            self._wanted_by_message = self._wanted_by_message and by_message

    async def _drain(self, sub: Subscription) -> None:
        """Take the messages already waiting, without waiting for more: the due reload
        reads a state that covers every one of them."""
        for _ in range(_DRAIN_MAX):
            item = await sub.next(0)
            if item is None:
                return
            if item is RESUBSCRIBED:
                self._want("resubscribed", by_message=False)
            elif isinstance(item, bytes) and decode_message(item) is None:
                self._unreadable(item)

    async def _check_version(self) -> None:
        """The periodic check that catches lost messages."""
        try:
            version = await self.plane.version()
        except DefinitionError as exc:
            self._reject(None, exc)
            return
        if version != self.version and version != self._rejected:
            await self._reload(f"periodic check saw version {version}")
        elif version < self.version:
            self._note_behind(version)

    def _unreadable(self, data: bytes) -> None:
        left_out = self._lines.allow("unreadable")
        if left_out is not None:
            event(
                log,
                logging.WARNING,
                "unreadable",
                "unreadable change message %r%s; reloading the full state",
                data[:200],
                f" ({left_out} more since the last line)" if left_out else "",
                left_out=left_out,
            )

    async def _on_message(self, data: bytes) -> None:
        message = decode_message(data)
        if message is None:
            self._unreadable(data)
            self._want("unreadable message")
            return
        current = self.holder.current
        if current is not None and message.version <= current.version:
            return  # a duplicate, or older than what serves: already covered
        if (
            message.kind is ChangeKind.OVERRIDE
            and current is not None
            and message.version == current.version + 1
            and self.source == "redis"
            and not self.redis_behind
            and self._raw is not None
            and message.key is not None
            and self._wanted is None
        ):
            if await self._apply_override(message, current, self._raw):
                return
            self._want(f"message for version {message.version} not confirmed by Redis")
            return
        self._want(f"message for version {message.version}")

    async def _apply_override(
        self, message: ChangeMessage, current: Snapshot, raw: RawState
    ) -> bool:
        """Apply an override message's change as Redis recorded it, when Redis confirms that
        the last write made exactly this version by changing exactly this flag (one MGET of
        the version and the change record). The override applied is the one the write
        stored, never the one the message carries."""
        assert message.key is not None
        check = await self.plane.read_change()
        recorded = check.confirmed(message)
        if recorded is None or self.holder.current is not current:
            return False
        try:
            start = time.perf_counter()
            snap = current.with_overrides({message.key: recorded.override}, message.version)
            self.compile_seconds = time.perf_counter() - start
        except DefinitionError:
            return False  # the reload reports why
        self.redis_version = max(self.redis_version, check.version)
        overrides = dict(raw.overrides)
        if recorded.override is None:
            overrides.pop(message.key, None)
        else:
            overrides[message.key] = encode_override(recorded.override)
        state = RawState(message.version, raw.definitions, MappingProxyType(overrides))
        self._install(snap, state, "redis", message.key, recorded.override is not None)
        return True

    def _note_behind(self, version: int) -> None:
        if not self.redis_behind:
            event(
                log,
                logging.WARNING,
                "redis_behind",
                "Redis is at version %d, behind the version %d this edge serves; keeping ours "
                "until Redis moves past it (flagedge push re-seeds it)",
                version,
                self.version,
                redis_version=version,
                version=self.version,
            )
        self.redis_behind = True
        self._beat_now.set()

    async def _reload(self, why: str, *, check_first: bool = False) -> None:
        current = self.holder.current
        if check_first and current is not None and self.source == "redis":
            # Asked for by messages alone (which anyone who may PUBLISH can send): one small
            # read first, and no full load when Redis holds what serves.
            try:
                version = await self.plane.version()
            except DefinitionError as exc:
                self._reject(None, exc)
                return
            if version in (current.version, self._rejected):
                self.redis_version = version
                return
        left_out = self._lines.allow(f"resync:{why.split(' ')[0]}") if check_first else 0
        event(
            log,
            (logging.INFO if why != "subscribed" or self._sessions > 1 else logging.DEBUG)
            if left_out is not None
            else logging.DEBUG,
            "resync",
            "reloading the full state from Redis (%s)",
            why,
            reason=why,
            version=self.version,
        )
        try:
            raw = await self.plane.load()
        except DefinitionError as exc:
            self._reject(None, exc)
            return
        self.redis_version = raw.version
        current = self.holder.current
        if current is not None and raw.version < current.version:
            self._note_behind(raw.version)
            return
        was_behind, self.redis_behind = self.redis_behind, False
        if was_behind:
            log.info("Redis caught up: version %d", raw.version)
        elif current is not None and raw.version == current.version and self.source == "redis":
            self._clear_corrupt()
            return
        if raw.version == self._rejected:
            return  # refused already; said so then
        quick = self._overrides_only(raw)
        if quick is not None:
            self._install(quick, raw, "redis", None, False, why)
            return
        try:
            snap, took = await asyncio.to_thread(_timed_build, raw, self.fractional, self.limits)
        except DefinitionError as exc:
            self._reject(raw.version, exc)
            return
        self.compile_seconds = took
        self._install(snap, raw, "redis", None, False, why)

    def _overrides_only(self, raw: RawState) -> Snapshot | None:
        """The serving snapshot with ``raw``'s overrides, when ``raw`` holds the very
        definitions it serves (byte for byte): nothing to recompile. A burst of kill
        switches that outruns the fast path's confirmation costs a read, not a rebuild.
        None when a full build is needed (or would report a problem)."""
        current, mine = self.holder.current, self._raw
        if current is None or mine is None or self.source != "redis":
            return None
        if raw.definitions != mine.definitions:
            return None
        changes: dict[str, Override | None] = {
            key: None for key in mine.overrides if key not in raw.overrides
        }
        try:
            for key, value in raw.overrides.items():
                if mine.overrides.get(key) != value:
                    changes[key] = decode_override(value, f"overrides.{key}")
            start = time.perf_counter()
            snap = current.with_overrides(changes, raw.version)
        except DefinitionError:
            return None  # the full build refuses the state and says why
        self.compile_seconds = time.perf_counter() - start
        return snap

    def _clear_corrupt(self) -> None:
        """Redis reads cleanly again at the serving version: forget a refusal of a state
        that had no version (a corrupt key), which nothing else would clear."""
        if self.error is not None and self._rejected is None:
            self.error = None
            self._beat_now.set()

    def _reject(self, version: int | None, exc: DefinitionError) -> None:
        """Refuse a state (``version`` None: one whose version could not be read). Logged
        once per distinct refusal; reported in the heartbeat and /readyz until it clears."""
        self._rejected = version
        what = f"state version {version}" if version is not None else "state"
        error = f"{what} refused: {_summary(exc)}"
        if error == self.error:
            return  # said so already; the heartbeat and /readyz still carry it
        self.error = error
        event(
            log,
            logging.ERROR,
            "reject",
            "refused Redis %s: %d problem(s); still serving version %d: %s",
            what,
            len(exc.problems),
            self.version,
            "; ".join(str(p) for p in exc.problems),
            source="redis",
            rejected_version=version,
            version=self.version,
            problems=_problems(exc),
        )
        self._beat_now.set()

    def _install(
        self,
        snap: Snapshot,
        raw: RawState,
        source: str,
        key: str | None,
        set_override: bool,
        why: str = "",
    ) -> None:
        changed = self.holder.install(snap)
        if self.holder.current is not snap:
            return  # something newer is serving
        self.source = source
        self._raw = raw
        self.applied_at = time.time()
        self.error = None
        self._rejected = None
        self._note_stale()
        # The heartbeat (a Redis round trip) and the file write wait until the change has
        # reached clients: they cost CPU right when clients poll for the new value. The
        # heartbeat carries applied_at, so reporting it late does not change what it says.
        loop = asyncio.get_running_loop()
        if self._beat_soon is None:
            self._beat_soon = loop.call_later(_BEAT_DELAY, self._beat_after_apply)
        if source == "redis":
            self._last_change = loop.time()
            self._lkg_dirty.set()
        if key is not None:
            # The one-key fast path runs while clients poll for the new value: say so once
            # the loop has answered them (a log line costs about as much as an answer).
            loop.call_later(
                _QUIET, self._log_override, snap, key, set_override, len(changed), source
            )
        else:
            event(
                log,
                logging.INFO,
                "apply",
                "applied version %d from %s (%s): %d flag(s), %d changed",
                snap.version,
                source,
                why or "load",
                len(snap.keys),
                len(changed),
                version=snap.version,
                flags=len(snap.keys),
                changed=len(changed),
                source=source,
                reason=why or "load",
                compile_seconds=round(self.compile_seconds, 6),
            )

    def _log_override(
        self, snap: Snapshot, key: str, set_override: bool, changed: int, source: str
    ) -> None:
        ov = snap.overrides.get(key)
        what = (
            f"{ov.kind}{'' if ov.variant is None else ' ' + ov.variant}"
            f"{' ' + format(ov.percent, 'g') + '%' if ov.kind is OverrideKind.ROLLOUT else ''}"
            if set_override and ov is not None
            else "removed"
        )
        event(
            log,
            logging.INFO,
            "override",
            "applied version %d: override on %s %s",
            snap.version,
            key,
            what,
            version=snap.version,
            flag=key,
            override=None if not set_override or ov is None else ov.to_json(),
            changed=changed,
            source=source,
        )

    async def _install_lkg(self, path: Path) -> None:
        try:
            raw = read_lkg(path, self.env)
            snap, took = await asyncio.to_thread(_timed_build, raw, self.fractional, self.limits)
        except DefinitionError as exc:
            event(
                log,
                logging.ERROR,
                "reject",
                "no last-known-good state to serve: %s",
                _summary(exc),
                source=str(path),
                problems=_problems(exc),
            )
            return
        if self.holder.current is not None:
            return  # Redis answered meanwhile
        self.compile_seconds = took
        self._install(snap, raw, "lkg", None, False, f"last-known-good file {path}")
        event(
            log,
            logging.WARNING,
            "lkg",
            "serving STALE last-known-good state version %d from %s until Redis answers",
            snap.version,
            path,
            version=snap.version,
            path=str(path),
        )

    # -- background duties --------------------------------------------------------------------

    def _beat_after_apply(self) -> None:
        self._beat_soon = None
        self._beat_now.set()

    async def _heartbeats(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives just as the event is set, and then stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_interval):
                    await self._beat_now.wait()
            self._beat_now.clear()
            with contextlib.suppress(StoreUnavailable):
                await self.plane.heartbeat(self.heartbeat())

    async def _lkg_writer(self) -> None:
        if self.lkg_path is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await self._lkg_dirty.wait()
            # Debounce: let the change reach clients first (the write and its fsync cost
            # CPU right when the poll traffic for a flip peaks), and fold a burst of changes
            # (a kill switch storm, a rollout script) into one write, at most a second late.
            first = loop.time()
            while True:
                quiet_at = self._last_change + _LKG_QUIET
                now = loop.time()
                if now >= quiet_at or now >= first + _LKG_MAX_DELAY:
                    break
                await asyncio.sleep(min(quiet_at, first + _LKG_MAX_DELAY) - now)
            self._lkg_dirty.clear()
            await self._save_lkg()

    async def _save_lkg(self) -> None:
        raw, path = self._raw, self.lkg_path
        if raw is None or path is None or self.source != "redis":
            return
        try:
            await asyncio.to_thread(write_lkg, path, self.env, raw)
        except OSError as exc:
            log.error("cannot write last-known-good file %s: %s", path, exc)
