"""Where a server process gets its definitions: the Source seam.

    Source.start(holder)    install the first snapshot (or fall back) and keep following
    Source.ready()          something is serving
    Source.details()        what /readyz adds (a Redis edge: version, stale, connected...)
    Source.stop()           stop following; save what must be saved

    FileSource     --flags FILE (or the bundled examples): polled for changes, reloaded off
                   the event loop; a file that fails validation is logged and refused
    RedisSource    --redis URL --env NAME: the control plane (store/sync.py), heartbeats,
                   the last-known-good file, usage reports (store/usage.py)

A new source (another store, a remote sync) implements the same five members and is chosen
in ``make_source``. A source that cannot serve at all raises SourceFailed: exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..definitions import DEFAULT_LIMITS, DefinitionLimits
from ..errors import DefinitionError, FlagedgeError
from ..logs import event
from ..metrics import ServerMetrics
from ..snapshot import Snapshot, SnapshotHolder
from ..store.file import load_document
from ..store.redis import RedisPlane
from ..store.sync import EdgeSync
from ..store.usage import UsageReporter
from ..tasks import stop_task
from .config import RedisSource as RedisSettings
from .config import ServeConfig

log = logging.getLogger("flagedge.serve")

BUNDLED = "examples/flags.json"


class SourceFailed(FlagedgeError):
    """A source that has nothing to serve and cannot start (logged already)."""


class Source(Protocol):
    name: str  # what a Flagd-Selector ``source=`` names, and what logs call it

    async def start(self, holder: SnapshotHolder) -> None: ...

    def ready(self) -> bool: ...

    def details(self) -> Mapping[str, object]: ...

    async def stop(self) -> None: ...


def make_source(config: ServeConfig, metrics: ServerMetrics, server_id: str) -> Source:
    if config.redis is not None:
        return RedisSource(config.redis, metrics, server_id, config.definition_limits)
    return FileSource(config.flags, config.poll_interval, metrics, config.definition_limits)


# -- a file -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signature:
    device: int
    inode: int
    mtime_ns: int
    size: int


def _signature(path: Path) -> _Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _Signature(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _log_rejection(path: Path, exc: DefinitionError) -> None:
    event(
        log,
        logging.ERROR,
        "reject",
        "rejected %s: %d problem(s); still serving the last good flags: %s",
        path,
        len(exc.problems),
        "; ".join(str(p) for p in exc.problems),
        source=str(path),
        problems=[{"path": p.path, "message": p.message} for p in exc.problems],
    )


@contextlib.contextmanager
def _bundled() -> Iterator[Path]:
    resource = importlib.resources.files("flagedge").joinpath(BUNDLED)
    with importlib.resources.as_file(resource) as path:
        yield path


class FileSource:
    """A definitions file, watched by polling its (device, inode, mtime, size), which also
    sees a replace-by-rename; the bundled example set when no file is given (not watched)."""

    def __init__(
        self,
        flags: str | None,
        poll_interval: float,
        metrics: ServerMetrics,
        limits: DefinitionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.limits = limits
        self.watch = flags is not None
        self.name = flags if flags is not None else f"bundled:{BUNDLED}"
        self.poll_interval = poll_interval
        self.metrics = metrics
        self._flags = flags
        self._holder: SnapshotHolder | None = None
        self._task: asyncio.Task[None] | None = None
        self._resources = contextlib.ExitStack()
        self.path = Path(flags) if flags is not None else Path()

    def _load(self, previous: Snapshot | None) -> Snapshot:
        start = time.perf_counter()
        document = load_document(self.path, self.limits.max_bytes)
        if previous is None:
            snap = Snapshot.build(document, version=1, limits=self.limits)
        else:
            snap = previous.with_document(document, previous.version + 1)
        self.metrics.compile_seconds = time.perf_counter() - start
        return snap

    async def start(self, holder: SnapshotHolder) -> None:
        self._holder = holder
        if self._flags is None:
            self.path = self._resources.enter_context(_bundled())
        loaded = _signature(self.path)  # before reading: a change made meanwhile is seen
        try:
            snap = await asyncio.to_thread(self._load, None)
        except DefinitionError as exc:
            _log_rejection(self.path, exc)
            raise SourceFailed(str(exc)) from None
        holder.install(snap)
        if self.watch:
            self._task = asyncio.get_running_loop().create_task(
                self._follow(loaded), name="flagedge-watch"
            )

    async def _follow(self, loaded: _Signature | None) -> None:
        assert self._holder is not None
        holder, last = self._holder, loaded
        while True:
            await asyncio.sleep(self.poll_interval)
            current = _signature(self.path)
            if current is None or current == last:
                continue  # unchanged, or mid-rename: look again next time
            last = current
            try:
                snap = await asyncio.to_thread(self._load, holder.current)
            except DefinitionError as exc:
                _log_rejection(self.path, exc)
                continue
            except Exception:
                log.exception("could not reload %s; still serving the last good flags", self.path)
                continue
            changed = holder.install(snap)
            event(
                log,
                logging.INFO,
                "apply",
                "reloaded %s: version %d, %d flag(s), %d changed",
                self.path,
                snap.version,
                len(snap.keys),
                len(changed),
                version=snap.version,
                flags=len(snap.keys),
                changed=len(changed),
                source=str(self.path),
            )

    def ready(self) -> bool:
        return self._holder is not None and self._holder.current is not None

    def details(self) -> Mapping[str, object]:
        return {}

    def startup_fields(self) -> dict[str, object]:
        return {"compile_seconds": round(self.metrics.compile_seconds, 6)}

    async def stop(self) -> None:
        await stop_task(self._task)
        self._resources.close()


# -- the Redis control plane ---------------------------------------------------------------


class RedisSource:
    """An edge of the Redis control plane: EdgeSync keeps the holder on Redis's latest valid
    state (or the last-known-good file), and a UsageReporter sends evaluation counts."""

    def __init__(
        self,
        settings: RedisSettings,
        metrics: ServerMetrics,
        edge_id: str,
        limits: DefinitionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limits = limits
        self.name = f"redis:{settings.env}"
        self.target = settings.target()
        self.plane = RedisPlane(self.target, settings.env, max_bytes=limits.max_bytes)
        self.edge_id = edge_id
        self.sync: EdgeSync | None = None
        self.usage: UsageReporter | None = None
        self._holder: SnapshotHolder | None = None

    async def start(self, holder: SnapshotHolder) -> None:
        self._holder = holder
        self.sync = EdgeSync(
            self.plane,
            holder,
            env=self.settings.env,
            edge_id=self.edge_id,
            lkg_path=Path(self.settings.lkg_file) if self.settings.lkg_file else None,
            check_interval=self.settings.check_interval,
            limits=self.limits,
        )
        self.metrics.sync = self.sync
        await self.sync.start()
        self.usage = UsageReporter(
            self.metrics.usage_totals, self.plane, holder, interval=self.settings.usage_interval
        )
        self.usage.start()

    def ready(self) -> bool:
        # A Redis-fed edge may start with nothing to serve (Redis down, no last-known-good).
        return self._holder is not None and self._holder.current is not None

    def details(self) -> Mapping[str, object]:
        return {} if self.sync is None else self.sync.status()

    def startup_fields(self) -> dict[str, object]:
        sync = self.sync
        return {
            "redis": str(self.target),
            "env": self.settings.env,
            "edge": self.edge_id,
            "stale": False if sync is None else sync.stale,
        }

    async def stop(self) -> None:
        if self.usage is not None:
            await self.usage.stop()  # a last report, so that counts since the previous are kept
        if self.sync is not None:
            await self.sync.stop()
