"""Prometheus metrics for one server process, counted without a lock on the hot path.

    servicer ─ record(resolution) ──────► EvaluationCounter._pending   (list.append: no lock,
             ─ record_many(resolutions) ─►                              no new object)
             ─ record_batch(batch) ─────► per-column tallies over the packed arrays (C speed)
    every second, and before each scrape:  fold _pending ─► totals {(flag, variant, reason): n}
    handlers ─ timed(method, fn) ───────► LatencyHistogram (one bucket += 1, no lock)
    streams ─ streaming(method, fn) ────► active stream gauge
    GET /metrics ─► ServerMetrics.negotiated(accept) ─► MetricsCollector.collect(), read at scrape
                  time, encoded as text or OpenMetrics (prometheus_client's choose_encoder)

Why not prometheus_client's Counter: ``inc()`` takes a lock and needs the label tuple built
per call. Here an evaluation costs one ``list.append`` of the prebuilt, shared Resolution the
engine returned (it already names flag, variant and reason); the fold, off the request path,
tallies the list by object identity (``Counter(map(id, ...))``, in C) and turns each distinct
Resolution into its labels once. The pending list holds references, so an id cannot be reused
by another object before it is folded. Everything here runs on the server's event loop thread;
a fold from another thread only takes the items present when it started (GIL-atomic slices).

Workers. With ``serve --workers N`` every worker binds the same management port
(SO_REUSEPORT), so a scrape reaches one worker chosen by the kernel. Each worker therefore
writes its own values to ``worker-I.json`` in a directory the supervisor makes (and removes
on exit) every second, and whichever worker answers a scrape serves
the whole process group: counters and histograms summed over workers (sibling values at most
a second old), per-process gauges (snapshot version, staleness, lag) with a ``worker`` label.
That keeps one scrape target per host, with counters that never go backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .engine import BatchResult
from .model import ErrorCode, ErrorCodeNumber, ReasonCode, Resolution
from .snapshot import Snapshot, SnapshotHolder
from .tasks import stop_task
from .wire import clean_text

# Handler time buckets, in seconds: an evaluation call takes tens of microseconds, a big batch
# tens of milliseconds.
LATENCY_BOUNDS: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
STREAM_METHODS: Final = (
    "flagedge.v1.Evaluation/Watch",
    "flagedge.v1.Evaluation/EvaluateStream",
    "flagd.evaluation.v2.Service/EventStream",
    "flagd.evaluation.v1.Service/EventStream",
)
# Requests for keys no flag has would otherwise grow the label set without bound: the first
# few keep their own label (at most LABEL_CHARS characters: a longer key is cut and given a
# digest, so that a megabyte key costs a scrape a few dozen bytes), the rest share one.
MAX_UNKNOWN_KEYS: Final = 20
LABEL_CHARS: Final = 64
OTHER_UNKNOWN: Final = "__other_unknown__"

_REASON_NAMES: Final = {code.value: code.name for code in ReasonCode}
_NOT_FOUND: Final = int(ErrorCodeNumber.FLAG_NOT_FOUND)

_LOW_BYTE: Final = 0 if sys.byteorder == "little" else 1
_BYTES: Final = tuple(bytes((i & 0xFF,)) for i in range(256))  # _BYTES[-1] is b"\xff"

Label = tuple[str, str, str]  # flag, variant ("" for none), reason


class EvaluationCounter:
    """Evaluations by flag, variant and reason. ``record``/``record_many`` are the bound
    ``append``/``extend`` of the pending list: call them with the Resolutions the engine
    returned; ``fold`` (on the loop, off the request path) moves them into ``totals``."""

    __slots__ = ("_pending", "_unknown", "record", "record_many", "totals")

    def __init__(self) -> None:
        self._pending: list[Resolution] = []
        self.record: Callable[[Resolution], None] = self._pending.append
        self.record_many: Callable[[Iterable[Resolution]], None] = self._pending.extend
        self.totals: dict[Label, int] = {}
        self._unknown: set[str] = set()

    def _flag_label(self, key: str) -> str:
        """A requested key that names no flag: itself (bounded), while few are seen."""
        label = bounded_label(key)
        if label in self._unknown:
            return label
        if len(self._unknown) < MAX_UNKNOWN_KEYS:
            self._unknown.add(label)
            return label
        return OTHER_UNKNOWN

    def fold(self) -> None:
        pending = self._pending
        n = len(pending)
        if not n:
            return
        items = pending[:n]
        del pending[:n]  # appends made meanwhile (another thread) stay for the next fold
        counts = Counter(map(id, items))
        objects = dict(zip(map(id, items), items, strict=True))
        totals = self.totals
        for ident, count in counts.items():
            r = objects[ident]
            key = r.key
            if r.error_code is ErrorCode.FLAG_NOT_FOUND:
                key = self._flag_label(key)
            label = (key, r.variant or "", r.reason.value)
            totals[label] = totals.get(label, 0) + count

    def record_batch(self, batch: BatchResult) -> None:
        """Count an EvaluateBatch answer column by column, at C speed: a column whose cells
        agree (every fixed flag) costs two counts; a column with one reason (most rules) one
        ``bytes.count`` per variant over the cells' low bytes; others one Counter(zip)."""
        nf, nc = len(batch.keys), batch.contexts
        if not nf or not nc:
            return
        vi, reasons, errors, totals = batch.variant_index, batch.reasons, batch.errors, self.totals
        for f in range(nf):
            key = batch.keys[f]
            if errors[f] == _NOT_FOUND:
                key = self._flag_label(key)
            vcol, rcol = vi[f::nf], reasons[f::nf]
            v0, r0 = vcol[0], rcol[0]
            names = batch.variant_tables[f]
            if rcol.count(r0) == nc:  # one reason: count variants, memchr-fast
                reason = _REASON_NAMES[r0]
                if vcol.count(v0) == nc:
                    label = (key, names[v0] if v0 >= 0 else "", reason)
                    totals[label] = totals.get(label, 0) + nc
                    continue
                if len(names) < 255:
                    # The low byte of each 2-byte cell is the variant index (-1 is 0xff).
                    low = vcol.tobytes()[_LOW_BYTE::2]
                    for v in (*range(len(names)), -1):
                        count = low.count(_BYTES[v])
                        if count:
                            label = (key, names[v] if v >= 0 else "", reason)
                            totals[label] = totals.get(label, 0) + count
                    continue
            for (v, r), count in Counter(zip(vcol, rcol, strict=True)).items():
                label = (key, names[v] if v >= 0 else "", _REASON_NAMES[r])
                totals[label] = totals.get(label, 0) + count

    def by_flag_variant(self) -> dict[tuple[str, str], int]:
        """Totals summed over reasons (what usage reporting needs)."""
        out: dict[tuple[str, str], int] = {}
        for (flag, variant, _reason), count in self.totals.items():
            out[flag, variant] = out.get((flag, variant), 0) + count
        return out


def bounded_label(text: str) -> str:
    """A label value of at most LABEL_CHARS characters (a longer one: its head and a
    digest of the whole), holding only text UTF-8 can carry."""
    if len(text) > LABEL_CHARS:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        text = f"{text[: LABEL_CHARS - 14]}~{digest}"
    return text if text.isascii() else clean_text(text)


class LatencyHistogram:
    """Bucket counts for one method: ``counts[i]`` holds observations <= LATENCY_BOUNDS[i],
    the last one the rest (+Inf). Not cumulative until exported."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.sum = 0.0


class SyncView(Protocol):
    """What a Redis-fed edge reports (store/sync.py's EdgeSync)."""

    redis_version: int
    connected: bool
    stale_since: float | None
    compile_seconds: float

    @property
    def stale(self) -> bool: ...


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Req, Any], Resp]


class ServerMetrics:
    """Everything one server process counts, plus what it knows about its state.

    ``worker`` names this process in per-process gauges; ``share_dir`` (the supervisor's
    FLAGEDGE_METRICS_DIR) makes every worker's scrape answer for all of them."""

    def __init__(self, *, worker: str = "0", share_dir: Path | None = None) -> None:
        self.worker = worker
        self.share_dir = share_dir
        self.evaluations = EvaluationCounter()
        self.latency: dict[str, LatencyHistogram] = {}
        self.streams: dict[str, int] = dict.fromkeys(STREAM_METHODS, 0)
        # With an auth file (server/caller.py): calls by client name, refusals by reason,
        # streams refused over a client's limit. Names come from the auth file: bounded.
        self.client_calls: dict[str, int] = {}
        self.auth_failures: dict[str, int] = {}
        self.streams_refused: dict[str, int] = {}
        self.client_streams: dict[str, int] = {}  # open now, by client (the limit's count)
        self.holder: SnapshotHolder | None = None
        self.sync: SyncView | None = None
        self.last_apply = 0.0
        self.compile_seconds = 0.0
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MetricsCollector(self))

    # -- wiring ------------------------------------------------------------------------------

    def bind(self, holder: SnapshotHolder) -> None:
        """Follow ``holder``: its snapshot's version and flags, and when each was applied."""
        if self.holder is holder:
            return
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.holder = holder
        if holder.current is not None:
            self.last_apply = time.time()
        self._unsubscribe = holder.subscribe(self._on_install)

    def _on_install(self, snapshot: Snapshot, changed: frozenset[str]) -> None:
        self.last_apply = time.time()

    def timed(self, method: str, handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
        """``handler`` with its time recorded in ``method``'s histogram (exceptions too)."""
        histogram = self.latency.setdefault(method, LatencyHistogram())
        counts, clock = histogram.counts, time.perf_counter

        def call(request: Req, context: Any) -> Resp:
            start = clock()
            try:
                return handler(request, context)
            finally:
                elapsed = clock() - start
                counts[bisect_left(LATENCY_BOUNDS, elapsed)] += 1
                histogram.sum += elapsed

        return call

    def recorder(self, method: str) -> Callable[[float], None]:
        """Record one call's seconds in ``method``'s histogram, for handlers that time
        themselves (HTTP handlers whose arguments are not a request and a context)."""
        histogram = self.latency.setdefault(method, LatencyHistogram())
        counts = histogram.counts

        def observe(elapsed: float) -> None:
            counts[bisect_left(LATENCY_BOUNDS, elapsed)] += 1
            histogram.sum += elapsed

        return observe

    def streaming(
        self, method: str, handler: Callable[[Req, Any], AsyncIterator[Resp]]
    ) -> Callable[[Req, Any], AsyncIterator[Resp]]:
        """``handler`` (a streaming call) counted in ``method``'s active-stream gauge."""
        streams = self.streams
        streams.setdefault(method, 0)

        async def call(request: Req, context: Any) -> AsyncIterator[Resp]:
            streams[method] += 1
            try:
                async for item in handler(request, context):
                    yield item
            finally:
                streams[method] -= 1

        return call

    # -- the periodic fold -------------------------------------------------------------------

    def start(self, interval: float = 1.0) -> None:
        """Fold (and, with a share directory, publish) every ``interval`` seconds."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(interval), name="flagedge-metrics"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        self.fold()
        self._publish()

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.fold()
            self._publish()

    def fold(self) -> None:
        self.evaluations.fold()

    def usage_totals(self) -> dict[tuple[str, str], int]:
        """Evaluations so far by (flag, variant), freshly folded: what edges report to Redis."""
        self.fold()
        return self.evaluations.by_flag_variant()

    # -- state, shared between workers -------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """This process's values, JSON-shaped (what a worker publishes for its siblings)."""
        snap = None if self.holder is None else self.holder.current
        gauges: dict[str, float | int | None] = {
            "version": 0 if snap is None else snap.version,
            "flags": 0 if snap is None else len(snap.keys),
            "last_apply": self.last_apply,
            "compile_seconds": self.compile_seconds,
        }
        sync = self.sync
        if sync is not None:
            gauges["compile_seconds"] = sync.compile_seconds
            gauges["redis_version"] = sync.redis_version
            gauges["connected"] = int(sync.connected)
            gauges["stale"] = int(sync.stale)
            gauges["stale_since"] = sync.stale_since if sync.stale else 0.0
        return {
            "worker": self.worker,
            "pid": os.getpid(),
            "evaluations": [[*label, n] for label, n in self.evaluations.totals.items()],
            "latency": {m: {"counts": h.counts, "sum": h.sum} for m, h in self.latency.items()},
            "streams": self.streams,
            "client_calls": self.client_calls,
            "auth_failures": self.auth_failures,
            "streams_refused": self.streams_refused,
            "gauges": gauges,
        }

    def _publish(self) -> None:
        if self.share_dir is None:
            return
        path = self.share_dir / f"worker-{self.worker}.json"
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # A metrics file must never stop serving (nor a value JSON cannot hold stop metrics).
        with contextlib.suppress(OSError, TypeError):
            temp.write_bytes(orjson.dumps(self.state()))
            os.replace(temp, path)

    def group_states(self) -> list[dict[str, Any]]:
        """This process's state, freshly folded, and every sibling worker's last published one."""
        self.fold()
        states = [self.state()]
        if self.share_dir is not None:
            for path in sorted(self.share_dir.glob("worker-*.json")):
                if path.name == f"worker-{self.worker}.json":
                    continue
                with contextlib.suppress(OSError, orjson.JSONDecodeError):
                    data = orjson.loads(path.read_bytes())
                    if isinstance(data, dict):
                        states.append(data)
        return states

    def exposition(self) -> bytes:
        """The Prometheus text format (GET /metrics without an Accept header)."""
        encode, _ = choose_encoder("")
        return encode(self.registry)

    def negotiated(self, accept: str) -> tuple[bytes, str]:
        """GET /metrics: the body and its content type, in the format ``accept`` (the Accept
        header) asks for. prometheus_client's own negotiation: OpenMetrics when asked for
        (prometheus_client.openmetrics.exposition), the Prometheus text format otherwise."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


@dataclass(frozen=True, slots=True)
class _Gauge:
    name: str
    help: str
    read: Callable[[Mapping[str, Any], float], float | None]


def _field(name: str) -> Callable[[Mapping[str, Any], float], float | None]:
    def read(gauges: Mapping[str, Any], now: float) -> float | None:
        value = gauges.get(name)
        return None if value is None else float(value)

    return read


def _since_apply(gauges: Mapping[str, Any], now: float) -> float | None:
    last = float(gauges.get("last_apply") or 0.0)
    return None if last <= 0 else max(0.0, now - last)


def _lag(gauges: Mapping[str, Any], now: float) -> float | None:
    redis_version = gauges.get("redis_version")
    if redis_version is None:
        return None
    return float(max(0, int(redis_version) - int(gauges.get("version") or 0)))


_GAUGES: Final = (
    _Gauge("flagedge_snapshot_version", "Version of the snapshot serving.", _field("version")),
    _Gauge("flagedge_snapshot_flags", "Number of flags in the serving snapshot.", _field("flags")),
    _Gauge(
        "flagedge_snapshot_compile_seconds",
        "Time taken to build (validate and compile) the serving snapshot.",
        _field("compile_seconds"),
    ),
    _Gauge(
        "flagedge_last_apply_timestamp_seconds",
        "Unix time the serving snapshot was installed.",
        _field("last_apply"),
    ),
    _Gauge(
        "flagedge_seconds_since_last_apply",
        "Seconds since the serving snapshot was installed.",
        _since_apply,
    ),
    _Gauge(
        "flagedge_redis_version", "Latest version this edge saw in Redis.", _field("redis_version")
    ),
    _Gauge(
        "flagedge_convergence_lag_versions",
        "How many versions the serving snapshot is behind Redis.",
        _lag,
    ),
    _Gauge("flagedge_redis_connected", "1 while subscribed to Redis.", _field("connected")),
    _Gauge(
        "flagedge_serving_stale",
        "1 while serving state Redis has not confirmed (unreachable, or last-known-good).",
        _field("stale"),
    ),
    _Gauge(
        "flagedge_serving_stale_since_timestamp_seconds",
        "Unix time the edge started serving stale state; 0 when not stale.",
        _field("stale_since"),
    ),
)


class MetricsCollector(Collector):
    """Builds every family at scrape time from the process group's states."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        states = self.metrics.group_states()
        now = time.time()

        evaluations = CounterMetricFamily(
            "flagedge_evaluations",
            "Flag evaluations by flag, variant and reason (variant empty: the caller's default).",
            labels=("flag", "variant", "reason"),
        )
        totals: dict[tuple[str, str, str], int] = {}
        for state in states:
            for flag, variant, reason, count in state.get("evaluations", ()):
                # Flag and variant names come from definitions; a scrape must survive any.
                label = (_text(flag), _text(variant), str(reason))
                totals[label] = totals.get(label, 0) + int(count)
        for label in sorted(totals):
            evaluations.add_metric(label, totals[label])
        yield evaluations

        latency = HistogramMetricFamily(
            "flagedge_rpc_duration_seconds",
            "Time in the handler per call (per message on EvaluateStream), by gRPC method.",
            labels=("method",),
        )
        merged: dict[str, tuple[list[int], float]] = {}
        for state in states:
            for method, h in state.get("latency", {}).items():
                counts, total = merged.setdefault(method, ([0] * (len(LATENCY_BOUNDS) + 1), 0.0))
                for i, n in enumerate(h["counts"]):
                    counts[i] += int(n)
                merged[method] = (counts, total + float(h["sum"]))
        for method in sorted(merged):
            counts, total = merged[method]
            buckets, running = [], 0
            for bound, n in zip((*LATENCY_BOUNDS, float("inf")), counts, strict=True):
                running += n
                buckets.append((_le(bound), float(running)))
            latency.add_metric((method,), buckets, total)
        yield latency

        streams = GaugeMetricFamily(
            "flagedge_active_streams",
            "Open streaming calls (Watch, EvaluateStream, EventStream), by gRPC method.",
            labels=("method",),
        )
        open_streams: dict[str, int] = {}
        for state in states:
            for method, n in state.get("streams", {}).items():
                open_streams[method] = open_streams.get(method, 0) + int(n)
        for method in sorted(open_streams):
            streams.add_metric((method,), open_streams[method])
        yield streams

        yield from _summed_counters(states)

        for gauge in _GAUGES:
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=("worker",))
            for state in sorted(states, key=lambda s: str(s.get("worker"))):
                value = gauge.read(state.get("gauges", {}), now)
                if value is not None:
                    family.add_metric((str(state.get("worker")),), value)
            if family.samples:
                yield family

        workers = GaugeMetricFamily(
            "flagedge_workers", "Server processes whose metrics this answer covers."
        )
        workers.add_metric((), len(states))
        yield workers


# Counters by one label, summed over workers: (state field, metric, help, label). Only
# present with an auth file; a family with no samples is left out of the answer.
_LABELLED_COUNTERS: Final = (
    (
        "client_calls",
        "flagedge_client_calls",
        "Calls admitted, by the client's name in the auth file (never its token).",
        "client",
    ),
    (
        "auth_failures",
        "flagedge_auth_failures",
        "Calls refused by the token check: missing, malformed, unknown (token), scope, "
        "streams (the client's limit of open streams).",
        "reason",
    ),
    (
        "streams_refused",
        "flagedge_streams_refused",
        "Streaming calls refused because the client held its limit of open streams.",
        "client",
    ),
)


def _summed_counters(states: Iterable[Mapping[str, Any]]) -> Iterator[Metric]:
    states = list(states)
    for field, name, text, label in _LABELLED_COUNTERS:
        totals: dict[str, int] = {}
        for state in states:
            for key, n in (state.get(field) or {}).items():
                totals[str(key)] = totals.get(str(key), 0) + int(n)
        if totals:
            family = CounterMetricFamily(name, text, labels=(label,))
            for key in sorted(totals):
                family.add_metric((key,), totals[key])
            yield family


def _text(value: Any) -> str:
    text = str(value)
    return text if text.isascii() else clean_text(text)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
