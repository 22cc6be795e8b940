"""``flagedge serve --redis URL --env NAME``: one server process fed by the Redis control plane.

    RedisPlane (store/redis.py) ──► EdgeSync (store/sync.py) ──► SnapshotHolder ──► gRPC
                                         │                                     └─► Watch /
                                         ├─► heartbeat  flagedge:{env}:edge:{id}   EventStream
                                         └─► last-known-good file
    ServerMetrics (evaluation counts) ──► UsageReporter ──► flagedge:{env}:usage:{day} (usage.py)

The options live here so that server/app.py only has to branch: with --redis, each worker
runs a synchroniser instead of the file watcher. Edges are stateless apart from the
last-known-good file, so any number of them can run behind a load balancer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .logs import event
from .metrics import ServerMetrics
from .server.server import default_server_id, start_server
from .snapshot import SnapshotHolder
from .store.redis import RedisPlane, parse_target
from .store.sync import EdgeSync
from .usage import UsageReporter

if TYPE_CHECKING:
    from .server.app import ServeConfig

log = logging.getLogger("flagedge.serve")


def state_dir() -> Path:
    """Where an edge keeps its last-known-good file unless told otherwise."""
    explicit = os.environ.get("FLAGEDGE_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "flagedge"


def default_lkg(env: str) -> Path:
    return state_dir() / f"lkg-{env}.json"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def add_redis_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Redis control plane (instead of --flags)")
    group.add_argument(
        "--redis",
        default=os.environ.get("FLAGEDGE_REDIS_URL") or None,
        metavar="URL",
        help="redis://[user:password@]host:port[/db], rediss://..., or "
        "redis+sentinel://[user:password@]host:port,.../MASTER [FLAGEDGE_REDIS_URL]",
    )
    group.add_argument(
        "--env",
        default=os.environ.get("FLAGEDGE_ENV") or None,
        metavar="NAME",
        help="environment: the key prefix flagedge:NAME: [FLAGEDGE_ENV]",
    )
    group.add_argument(
        "--lkg-file",
        default=os.environ.get("FLAGEDGE_LKG_FILE") or None,
        metavar="FILE",
        help="last-known-good state, served when Redis is unreachable at start "
        "[FLAGEDGE_LKG_FILE; default $FLAGEDGE_STATE_DIR or ~/.local/state/flagedge/lkg-ENV.json]",
    )
    group.add_argument(
        "--sentinel",
        default=os.environ.get("FLAGEDGE_SENTINEL") or None,
        metavar="HOST:PORT,...",
        help="Sentinel addresses; --redis then only gives credentials [FLAGEDGE_SENTINEL]",
    )
    group.add_argument(
        "--sentinel-master",
        default=os.environ.get("FLAGEDGE_SENTINEL_MASTER") or None,
        metavar="NAME",
        help="the Sentinel master name [FLAGEDGE_SENTINEL_MASTER]",
    )
    group.add_argument(
        "--redis-check-interval",
        type=float,
        default=_env_float("FLAGEDGE_REDIS_CHECK_INTERVAL", 2.0),
        metavar="S",
        help="seconds between version checks that catch lost messages "
        "[FLAGEDGE_REDIS_CHECK_INTERVAL; default 2]",
    )
    group.add_argument(
        "--usage-interval",
        type=float,
        default=_env_float("FLAGEDGE_USAGE_INTERVAL", 30.0),
        metavar="S",
        help="seconds between reports of evaluation counts to Redis, for `flagedge stale` "
        "[FLAGEDGE_USAGE_INTERVAL; default 30]",
    )


@dataclass(frozen=True, slots=True)
class RedisOptions:
    url: str
    env: str
    lkg_file: Path
    sentinel: str | None
    sentinel_master: str | None
    check_interval: float
    usage_interval: float = 30.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RedisOptions | None:
        url = getattr(args, "redis", None)
        sentinel = getattr(args, "sentinel", None)
        if not url and not sentinel:
            return None
        env = getattr(args, "env", None)
        if not env:
            raise SystemExit("flagedge serve: --redis needs --env NAME (or FLAGEDGE_ENV)")
        return cls(
            url=url or "",
            env=env,
            lkg_file=Path(args.lkg_file) if args.lkg_file else default_lkg(env),
            sentinel=sentinel,
            sentinel_master=args.sentinel_master,
            check_interval=args.redis_check_interval,
            usage_interval=getattr(args, "usage_interval", 30.0),
        )

    def worker_arguments(self) -> list[str]:
        """For the supervisor's workers; the URL (it may hold a password) goes by environment."""
        out = [
            f"--env={self.env}",
            f"--lkg-file={self.lkg_file}",
            f"--redis-check-interval={self.check_interval}",
            f"--usage-interval={self.usage_interval}",
        ]
        if self.sentinel:
            out.append(f"--sentinel={self.sentinel}")
        if self.sentinel_master:
            out.append(f"--sentinel-master={self.sentinel_master}")
        return out

    def worker_environment(self) -> dict[str, str]:
        return {**os.environ, "FLAGEDGE_REDIS_URL": self.url}


class Readiness(Protocol):
    ready: bool
    check: Callable[[], bool]
    details: Callable[[], Mapping[str, object]]


async def serve_redis(
    config: ServeConfig,
    options: RedisOptions,
    readiness: Readiness,
    stopping: asyncio.Event,
    management_port: int,
    metrics: ServerMetrics | None = None,
) -> int:
    """Serve until ``stopping`` is set; the exit status."""
    try:
        target = parse_target(options.url, options.sentinel, options.sentinel_master)
    except ValueError as exc:
        log.error("bad Redis address: %s", exc)
        return 2
    metrics = metrics or ServerMetrics()
    holder = SnapshotHolder()
    edge_id = default_server_id()
    plane = RedisPlane(target, options.env)
    sync = EdgeSync(
        plane,
        holder,
        env=options.env,
        edge_id=edge_id,
        lkg_path=options.lkg_file,
        check_interval=options.check_interval,
    )
    readiness.check = lambda: holder.current is not None
    readiness.details = sync.status
    metrics.sync = sync
    metrics.bind(holder)
    await sync.start()
    running = await start_server(
        holder,
        config.host,
        config.port,
        source=f"redis:{options.env}",
        reuse_port=config.worker,
        server_id=edge_id,
        metrics=metrics,
        stream_deadline=config.stream_deadline,
    )
    usage = UsageReporter(metrics, plane, holder, interval=options.usage_interval)
    usage.start()
    readiness.ready = True
    event(
        log,
        logging.INFO,
        "startup",
        "serving gRPC on %s:%d, management on %s:%d, flags from %s env %r: version %d%s",
        config.host,
        running.port,
        config.host,
        management_port,
        target,
        options.env,
        sync.version,
        " (STALE)" if sync.stale else "" if holder.current else " (nothing yet: not ready)",
        port=running.port,
        management_port=management_port,
        source=f"redis:{options.env}",
        redis=str(target),
        env=options.env,
        edge=edge_id,
        version=sync.version,
        flags=0 if holder.current is None else len(holder.current.keys),
        stale=sync.stale,
        worker=metrics.worker,
    )
    try:
        await stopping.wait()
        event(
            log,
            logging.INFO,
            "shutdown",
            "draining (up to %.1f s)",
            config.grace,
            grace_seconds=config.grace,
        )
        readiness.ready = False
        await running.stop(config.grace)
    finally:
        await usage.stop()  # a last report, so that counts since the previous one are kept
        await sync.stop()
    event(log, logging.INFO, "stopped", "stopped")
    return 0
