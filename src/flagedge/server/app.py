"""``flagedge serve``: options, worker processes, file watching, signals.

    flagedge serve [--flags FILE] [--port 8013] [--management-port 8014] [--host H]
                   [--workers N] [--poll-interval S] [--grace S]
    flagedge serve --redis URL --env NAME [--lkg-file FILE] [--sentinel H:P,... --sentinel-master M]

Every option has an environment variable (FLAGEDGE_FLAGS, FLAGEDGE_PORT, ...); a flag on the
command line wins. Without --flags the bundled example set is served.

With --workers N > 1 this process becomes a supervisor: it starts N copies of itself as
worker processes that bind the same ports with SO_REUSEPORT (the kernel spreads connections
across them), starts a new one when one dies (with backoff; a crash loop or a worker's bad
configuration stops them all), forwards SIGTERM/SIGINT, and exits when they have drained.
Each worker loads and watches the definitions itself, so each applies every change on its
own. The supervisor also makes a directory (FLAGEDGE_METRICS_DIR) where the workers publish
their metrics, so that a scrape of the shared management port answers for all of them
(flagedge/metrics.py).

Logs are JSON lines on stderr (flagedge/logs.py), or sentences with --log-format text.

A worker polls the file's (inode, mtime, size) every --poll-interval seconds, which also sees a
replace-by-rename. A changed file is loaded and compiled off the event loop; a file that fails
validation is rejected with each problem logged, and the last good snapshot keeps serving.

With --redis, definitions come from the Redis control plane instead of a file (flagedge/edge.py
and store/sync.py): each worker runs its own synchroniser, and no file is watched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.resources
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from flagedge import logs
from flagedge.edge import RedisOptions, add_redis_arguments, serve_redis
from flagedge.errors import DefinitionError
from flagedge.logs import event
from flagedge.metrics import SHARE_DIR_ENV, WORKER_ENV, ServerMetrics
from flagedge.server import loop as event_loop
from flagedge.server.management import start_management
from flagedge.server.server import start_server
from flagedge.snapshot import Snapshot, SnapshotHolder
from flagedge.store.file import load_document

log = logging.getLogger("flagedge.serve")

BUNDLED = "examples/flags.json"


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s options to ``parser`` (the CLI's ``serve`` subparser)."""
    parser.add_argument(
        "--flags",
        default=os.environ.get("FLAGEDGE_FLAGS") or None,
        metavar="FILE",
        help="flag definitions (JSON or YAML), reloaded on change [FLAGEDGE_FLAGS; "
        "default: the bundled example flags]",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("FLAGEDGE_HOST") or "0.0.0.0",
        help="address to listen on [FLAGEDGE_HOST; default 0.0.0.0, as flagd]",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_env_int("FLAGEDGE_PORT", 8013),
        help="gRPC port, 0 for any free one [FLAGEDGE_PORT; default 8013]",
    )
    parser.add_argument(
        "--management-port",
        type=int,
        default=_env_int("FLAGEDGE_MANAGEMENT_PORT", 8014),
        help="HTTP port for /healthz and /readyz [FLAGEDGE_MANAGEMENT_PORT; default 8014]",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=_env_int("FLAGEDGE_WORKERS", None),
        help="server processes sharing the port [FLAGEDGE_WORKERS; default: one per CPU]",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=_env_float("FLAGEDGE_POLL_INTERVAL", 0.5),
        help="seconds between checks of the flags file [FLAGEDGE_POLL_INTERVAL; default 0.5]",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=_env_float("FLAGEDGE_GRACE", 10.0),
        help="seconds to drain in-flight calls on SIGTERM [FLAGEDGE_GRACE; default 10]",
    )
    parser.add_argument(
        "--stream-deadline",
        type=float,
        default=_env_float("FLAGEDGE_STREAM_DEADLINE", 0.0),
        help="seconds after which the server ends a flagd EventStream with DEADLINE_EXCEEDED, "
        "as flagd's --stream-deadline; 0 for never [FLAGEDGE_STREAM_DEADLINE; default 0]",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("FLAGEDGE_LOG_LEVEL") or "INFO",
        help="debug, info, warning, error or critical [FLAGEDGE_LOG_LEVEL; default info]",
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=os.environ.get("FLAGEDGE_LOG_FORMAT") or "json",
        help="json: one object per line (ts, level, event, msg, fields); text: sentences "
        "[FLAGEDGE_LOG_FORMAT; default json]",
    )
    add_redis_arguments(parser)
    # Set by the supervisor for its workers: bind with SO_REUSEPORT, never supervise.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    flags: str | None
    host: str
    port: int
    management_port: int
    workers: int
    poll_interval: float
    grace: float
    worker: bool
    redis: RedisOptions | None = None
    log_level: str = "info"
    log_format: str = "json"
    stream_deadline: float = 0.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeConfig:
        workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
        return cls(
            flags=args.flags,
            host=args.host,
            port=args.port,
            management_port=args.management_port,
            workers=max(1, workers),
            poll_interval=args.poll_interval,
            grace=args.grace,
            worker=args.worker,
            redis=RedisOptions.from_args(args),
            log_level=str(args.log_level).lower(),
            log_format=args.log_format,
            stream_deadline=max(0.0, args.stream_deadline),
        )


def run(args: argparse.Namespace) -> int:
    """Run ``serve`` until SIGTERM/SIGINT; the exit status."""
    try:
        logs.setup(str(args.log_level), args.log_format)
    except ValueError as exc:
        print(f"flagedge serve: {exc}", file=sys.stderr)
        return 2
    config = ServeConfig.from_args(args)
    if config.workers > 1 and not config.worker:
        return _supervise(config)
    try:
        return event_loop.run(serve(config))
    except KeyboardInterrupt:
        return 130


# -- one server process ------------------------------------------------------------------


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


def _load(path: Path, previous: Snapshot | None) -> Snapshot:
    document = load_document(path)
    if previous is None:
        return Snapshot.build(document, version=1)
    return previous.with_document(document, previous.version + 1)


def _timed_load(path: Path, previous: Snapshot | None, metrics: ServerMetrics | None) -> Snapshot:
    start = time.perf_counter()
    snap = _load(path, previous)
    if metrics is not None:
        metrics.compile_seconds = time.perf_counter() - start
    return snap


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


async def watch_file(
    path: Path,
    holder: SnapshotHolder,
    interval: float,
    loaded: _Signature | None,
    metrics: ServerMetrics | None = None,
) -> None:
    """Reload ``path`` into ``holder`` whenever it changes from ``loaded`` (the signature taken
    before the serving snapshot was read, so a change made while starting up is not missed)."""
    last = loaded
    while True:
        await asyncio.sleep(interval)
        current = _signature(path)
        if current is None or current == last:
            continue  # unchanged, or mid-rename: look again next time
        last = current
        try:
            snap = await asyncio.to_thread(_timed_load, path, holder.current, metrics)
        except DefinitionError as exc:
            _log_rejection(path, exc)
            continue
        except Exception:
            log.exception("could not reload %s; still serving the last good flags", path)
            continue
        changed = holder.install(snap)
        event(
            log,
            logging.INFO,
            "apply",
            "reloaded %s: version %d, %d flag(s), %d changed",
            path,
            snap.version,
            len(snap.keys),
            len(changed),
            version=snap.version,
            flags=len(snap.keys),
            changed=len(changed),
            source=str(path),
        )


@contextlib.contextmanager
def _definitions(flags: str | None) -> Iterator[tuple[Path, str, bool]]:
    """(path, source name, watch?) for --flags, or for the bundled example set."""
    if flags is not None:
        yield Path(flags), flags, True
        return
    resource = importlib.resources.files("flagedge").joinpath(BUNDLED)
    with importlib.resources.as_file(resource) as path:
        yield path, f"bundled:{BUNDLED}", False


class _Readiness:
    def __init__(self) -> None:
        self.ready = False
        # A Redis-fed edge may start with nothing to serve; it also reports where its state
        # came from (stale or not) in /readyz.
        self.check: Callable[[], bool] = lambda: True
        self.details: Callable[[], Mapping[str, object]] = dict

    def __call__(self) -> bool:
        return self.ready and self.check()


async def serve(config: ServeConfig) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    readiness = _Readiness()
    reuse = config.worker
    metrics = ServerMetrics.from_environment()
    management = await start_management(
        config.host,
        config.management_port,
        readiness,
        reuse_port=reuse,
        details=lambda: readiness.details(),
        metrics=metrics.exposition,
    )
    try:
        if config.redis is not None:
            return await serve_redis(
                config, config.redis, readiness, stopping, management.port, metrics
            )
        with _definitions(config.flags) as (path, source, watch):
            loaded = _signature(path)
            try:
                snap = await asyncio.to_thread(_timed_load, path, None, metrics)
            except DefinitionError as exc:
                _log_rejection(path, exc)
                return 2
            except OSError as exc:
                event(
                    log,
                    logging.ERROR,
                    "reject",
                    "cannot read %s: %s",
                    path,
                    exc,
                    source=str(path),
                    problems=[{"path": "", "message": str(exc)}],
                )
                return 2
            holder = SnapshotHolder(snap)
            running = await start_server(
                holder,
                config.host,
                config.port,
                source=source,
                reuse_port=reuse,
                metrics=metrics,
                stream_deadline=config.stream_deadline,
            )
            readiness.ready = True
            event(
                log,
                logging.INFO,
                "startup",
                "serving gRPC on %s:%d, management on %s:%d, flags from %s (%d flag(s))",
                config.host,
                running.port,
                config.host,
                management.port,
                source,
                len(snap.keys),
                port=running.port,
                management_port=management.port,
                source=source,
                version=snap.version,
                flags=len(snap.keys),
                compile_seconds=round(metrics.compile_seconds, 6),
                worker=metrics.worker,
            )
            watcher = (
                asyncio.create_task(watch_file(path, holder, config.poll_interval, loaded, metrics))
                if watch
                else None
            )
            await stopping.wait()
            log_shutdown(config.grace)
            readiness.ready = False
            if watcher is not None:
                watcher.cancel()
            await running.stop(config.grace)
            event(log, logging.INFO, "stopped", "stopped")
            return 0
    finally:
        await management.close()


def log_shutdown(grace: float) -> None:
    event(log, logging.INFO, "shutdown", "draining (up to %.1f s)", grace, grace_seconds=grace)


# -- the supervisor ----------------------------------------------------------------------


def _reserve(host: str, port: int) -> tuple[int, socket.socket | None]:
    """For port 0, pick one free port for every worker and hold it (bound, never listening)
    so nothing else takes it while they start. SO_REUSEPORT lets the workers bind it too."""
    if port != 0:
        return port, None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock.getsockname()[1], sock


def _worker_command(config: ServeConfig, port: int, management_port: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "flagedge.server",
        "--worker",
        "--workers=1",
        f"--host={config.host}",
        f"--port={port}",
        f"--management-port={management_port}",
        f"--poll-interval={config.poll_interval}",
        f"--grace={config.grace}",
        f"--stream-deadline={config.stream_deadline}",
        f"--log-level={config.log_level}",
        f"--log-format={config.log_format}",
    ]
    if config.flags is not None:
        command.append(f"--flags={config.flags}")
    if config.redis is not None:
        command.extend(config.redis.worker_arguments())
    return command


# A worker that dies is started again after RESTART_BASE * 2**(n-1) seconds (at most
# RESTART_CAP; FLAGEDGE_RESTART_BACKOFF sets the base), n being how often its slot died in
# the last CRASH_WINDOW seconds; more than
# CRASH_LIMIT deaths there is a crash loop, and the supervisor stops every worker and exits 1
# (a process manager can then see it). A worker exiting 2 (bad configuration or arguments,
# which a restart cannot fix) stops them all at once, and the supervisor exits 2.
RESTART_BASE = 0.5
RESTART_CAP = 10.0
CRASH_WINDOW = 60.0
CRASH_LIMIT = 5


def _exit_words(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with {code}"


def _supervise(config: ServeConfig) -> int:
    port, hold_port = _reserve(config.host, config.port)
    management_port, hold_management = _reserve(config.host, config.management_port)
    command = _worker_command(config, port, management_port)
    env = dict(os.environ) if config.redis is None else config.redis.worker_environment()
    # Each worker publishes its metrics here, so that any of them can answer a scrape for all.
    shared = tempfile.mkdtemp(prefix="flagedge-metrics-")
    env[SHARE_DIR_ENV] = shared

    base = _env_float("FLAGEDGE_RESTART_BACKOFF", RESTART_BASE)

    def spawn(slot: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env={**env, WORKER_ENV: str(slot)})

    workers = [spawn(i) for i in range(config.workers)]
    event(
        log,
        logging.INFO,
        "supervise",
        "supervising %d workers on port %d: %s",
        len(workers),
        port,
        [w.pid for w in workers],
        workers=[w.pid for w in workers],
        port=port,
        management_port=management_port,
    )
    stopping = False
    told: set[int] = set()  # pids already sent SIGTERM (a second one cuts a drain short)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None and worker.pid not in told:
                told.add(worker.pid)
                worker.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    restart_at: dict[int, float] = {}  # slot -> when its replacement starts
    deaths: list[list[float]] = [[] for _ in workers]  # slot -> recent death times
    failure = 0
    try:
        while not stopping and not failure:
            now = time.monotonic()
            for slot, worker in enumerate(workers):
                code = worker.poll()
                if code is None or slot in restart_at:
                    continue
                deaths[slot] = [t for t in deaths[slot] if now - t < CRASH_WINDOW] + [now]
                if code == 2:
                    log.error("worker %d exited with 2 (bad configuration); stopping", worker.pid)
                    failure = 2
                    break
                if len(deaths[slot]) > CRASH_LIMIT:
                    log.error(
                        "worker %d %s: %d deaths of its slot in %.0f s, a crash loop; stopping",
                        worker.pid,
                        _exit_words(code),
                        len(deaths[slot]),
                        CRASH_WINDOW,
                    )
                    failure = 1
                    break
                delay = min(RESTART_CAP, base * 2 ** (len(deaths[slot]) - 1))
                event(
                    log,
                    logging.ERROR,
                    "worker_exit",
                    "worker %d %s; starting another in %.1f s",
                    worker.pid,
                    _exit_words(code),
                    delay,
                    pid=worker.pid,
                    returncode=code,
                    restart_in=delay,
                )
                restart_at[slot] = now + delay
            for slot, when in list(restart_at.items()):
                if now >= when and not stopping and not failure:
                    del restart_at[slot]
                    workers[slot] = spawn(slot)
                    event(
                        log,
                        logging.INFO,
                        "worker_start",
                        "started worker %d in place of one that died",
                        workers[slot].pid,
                        pid=workers[slot].pid,
                    )
            time.sleep(0.2)
        forward(signal.SIGTERM, None)  # the workers not told yet (one started just before)
        deadline = time.monotonic() + config.grace + 5.0
        for worker in workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not drain in time; killing it", worker.pid)
                worker.kill()
                worker.wait()
        if failure:
            return failure
        codes = [w.returncode for w in workers]
        return 0 if all(c == 0 for c in codes) else max(1, *codes)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for held in (hold_port, hold_management):
            if held is not None:
                held.close()
        shutil.rmtree(shared, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flagedge serve", description="Serve flags over gRPC.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
