"""Each Redis-fed edge adds its evaluation counts to Redis, so that ``flagedge stale`` can
tell which flags nobody evaluates any more, or which serve one variant only.

    totals(): {(flag, variant): evaluations} in process (the server's metrics), no Redis
        ─ every --usage-interval seconds (30): the growth since the last report ─►
    one MULTI: HINCRBY flagedge:{env}:usage:{UTC day} ["flag","variant"] n   (one per pair)
               EXPIRE that hash USAGE_RETENTION_DAYS; SET usage:since DAY NX; EXPIRE it

No evaluation ever waits for Redis: a report is a few dozen commands in one round trip every
half minute, whatever the traffic. A report that fails (Redis down) is kept and sent with
the next one. Counts from every edge and worker add up in the same hash. Keys no flag has
(FLAG_NOT_FOUND) are not reported: they cannot be removal candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Protocol

from ..definitions import DEFAULT_LIMITS, DefinitionLimits
from ..errors import DefinitionError, Refusal, StoreUnavailable
from ..lifecycle import Usage, window_days
from ..logs import event
from ..snapshot import Snapshot, SnapshotHolder
from ..tasks import stop_task
from .plane import USAGE_RETENTION_DAYS, RawState, build_snapshot

log = logging.getLogger("flagedge.usage")

RETENTION_SECONDS = USAGE_RETENTION_DAYS * 86_400


def day_of(ts: float) -> str:
    """The UTC day (YYYY-MM-DD) of Unix time ``ts``."""
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


class UsageSink(Protocol):
    async def add_usage(
        self, day: str, counts: Mapping[tuple[str, str], int], ttl_seconds: int
    ) -> None: ...


Totals = Callable[[], Mapping[tuple[str, str], int]]


class UsageReporter:
    """Reports the growth of ``totals()`` (counts since the process started, by flag and
    variant: the server's metrics) to ``sink`` every ``interval`` seconds."""

    def __init__(
        self,
        totals: Totals,
        sink: UsageSink,
        holder: SnapshotHolder,
        *,
        interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.totals = totals
        self.sink = sink
        self.holder = holder
        self.interval = interval
        self.clock = clock
        self.reported: dict[tuple[str, str], int] = {}
        self.reports = 0
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flagedge-usage")

    async def stop(self) -> None:
        """Stop, after a last report (bounded: shutting down never waits long on Redis)."""
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task)
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                await asyncio.wait_for(self.report(), 2.0)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(StoreUnavailable):
                await self.report()

    async def report(self) -> int:
        """Send the counts added since the last report; the number of (flag, variant) pairs
        sent. StoreUnavailable leaves them for the next report."""
        totals = dict(self.totals())
        snap = self.holder.current
        flags = {} if snap is None else snap.flags
        reported = self.reported
        delta = {
            pair: n - reported.get(pair, 0)
            for pair, n in totals.items()
            if n > reported.get(pair, 0) and pair[0] in flags
        }
        try:
            await self.sink.add_usage(day_of(self.clock()), delta, RETENTION_SECONDS)
        except StoreUnavailable as exc:
            if not self._failing:
                event(
                    log,
                    logging.WARNING,
                    "usage",
                    "could not report evaluation counts to Redis (%s); keeping them for the "
                    "next report",
                    exc,
                    pairs=len(delta),
                )
            self._failing = True
            raise
        self._failing = False
        self.reported = totals
        self.reports += 1
        if delta:
            event(
                log,
                logging.DEBUG,
                "usage",
                "reported %d evaluation(s) over %d flag/variant pair(s)",
                sum(delta.values()),
                len(delta),
                pairs=len(delta),
                evaluations=sum(delta.values()),
            )
        return len(delta)


class UsageReader(Protocol):
    """What judging staleness reads (store/redis.py's RedisAdmin)."""

    def read(self) -> RawState: ...

    def usage(
        self, days: Sequence[str]
    ) -> tuple[dict[str, dict[tuple[str, str], int]], str | None]: ...


def stale_inputs(
    admin: UsageReader, today: date, days: int, limits: DefinitionLimits = DEFAULT_LIMITS
) -> tuple[Snapshot, Usage]:
    """The definitions and the usage window as Redis holds them: what ``flagedge stale``
    and the admin service's stale report judge."""
    raw = admin.read()
    counts, since = admin.usage([d.isoformat() for d in window_days(today, days)])
    try:
        snap = build_snapshot(raw, limits=limits)
    except DefinitionError as exc:
        raise Refusal("the definitions in Redis are unusable", problems=exc.problems) from None
    return snap, Usage.from_store(counts, since)
