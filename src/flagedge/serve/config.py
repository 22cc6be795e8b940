"""ServeConfig: everything one ``flagedge serve`` needs, in one frozen value.

Built once from resolved settings (flagedge.config), checked there, and handed unchanged to
every worker process (as JSON in an environment variable, so that secrets such as a Redis
password never appear in a worker's command line). A new listener or source adds its fields
here and its options to a group in flagedge.config; nothing else needs plumbing. The limits
(config.LIMITS, config.DEFINITION_LIMITS) travel as ``limits`` (wire.Limits: requests,
streams, connections) and ``definition_limits`` (definitions.DefinitionLimits).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .. import config
from ..definitions import DefinitionLimits
from ..errors import ConfigError
from ..store.redis import Target, parse_target
from ..wire import Limits

# The supervisor hands a worker its configuration here (never on its command line).
WORKER_CONFIG_ENV = "FLAGEDGE_WORKER_CONFIG"


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/flagedge, or ~/.local/state/flagedge."""
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "flagedge"


@dataclass(frozen=True, slots=True)
class RedisSource:
    """Where a Redis-fed edge reads its state, and how it keeps in step."""

    url: str = dataclasses.field(repr=False)  # may hold a password
    env: str
    sentinel: str | None
    sentinel_master: str | None
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)
    lkg_file: str = ""
    check_interval: float = 2.0
    usage_interval: float = 30.0

    def target(self) -> Target:
        try:
            return parse_target(
                self.url,
                self.sentinel,
                self.sentinel_master,
                sentinel_password=self.sentinel_password,
            )
        except ValueError as exc:
            raise ConfigError(f"bad Redis address: {exc}") from None


@dataclass(frozen=True, slots=True)
class ServeConfig:
    flags: str | None
    host: str = "0.0.0.0"
    port: int = 8013
    management_port: int = 8014
    workers: int = 1
    poll_interval: float = 0.5
    grace: float = 10.0
    stream_deadline: float = 0.0
    restart_backoff: float = 0.5
    event_loop: str = "auto"
    log_level: str = "info"
    log_format: str = "json"
    redis: RedisSource | None = None
    limits: Limits = dataclasses.field(default_factory=Limits)
    definition_limits: DefinitionLimits = dataclasses.field(default_factory=DefinitionLimits)
    # Set by the supervisor for its workers: bind with SO_REUSEPORT, publish metrics to
    # metrics_dir under worker_index, never supervise.
    worker: bool = False
    worker_index: str = "0"
    metrics_dir: str | None = None

    @classmethod
    def from_settings(cls, s: config.Settings) -> ServeConfig:
        redis = None
        url = config.redis_url(s)
        if url or s["sentinel"]:
            env = s["env"]
            if not env:
                raise ConfigError("serve --redis needs --env NAME (or FLAGEDGE_ENV)")
            state_dir = Path(s["state_dir"]) if s["state_dir"] else default_state_dir()
            redis = RedisSource(
                url=url or "",
                env=env,
                sentinel=s["sentinel"],
                sentinel_master=s["sentinel_master"],
                sentinel_password=s["sentinel_password"],
                lkg_file=s["lkg_file"] or str(state_dir / f"lkg-{env}.json"),
                check_interval=s["redis_check_interval"],
                usage_interval=s["usage_interval"],
            )
            redis.target()  # a bad address is a configuration error, found now
        workers = s["workers"] if s["workers"] is not None else (os.cpu_count() or 1)
        return cls(
            flags=s["flags"],
            host=s["host"],
            port=s["port"],
            management_port=s["management_port"],
            workers=max(1, workers),
            poll_interval=s["poll_interval"],
            grace=s["grace"],
            stream_deadline=s["stream_deadline"],
            restart_backoff=s["restart_backoff"],
            event_loop=s["event_loop"],
            log_level=s["log_level"],
            log_format=s["log_format"],
            redis=redis,
            limits=Limits(
                max_message_bytes=s["max_message_bytes"],
                max_batch_cells=s["max_batch_cells"],
                max_context_depth=s["max_context_depth"],
                max_context_bytes=s["max_context_bytes"],
                max_context_keys=s["max_context_keys"],
                max_keys=s["max_keys"],
                max_streams=s["max_streams"],
                max_streams_per_connection=s["max_streams_per_connection"],
                max_connection_idle=s["max_connection_idle"],
                keepalive_time=s["keepalive_time"],
                min_ping_interval=s["min_ping_interval"],
                max_ping_strikes=s["max_ping_strikes"],
            ),
            definition_limits=config.definition_limits(s),
        )

    # -- the hand-off to workers -------------------------------------------------------------

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: str | bytes) -> ServeConfig:
        raw: dict[str, Any] = orjson.loads(data)
        redis = raw.pop("redis", None)
        limits = Limits(**raw.pop("limits", {}))
        definition_limits = DefinitionLimits(**raw.pop("definition_limits", {}))
        return cls(
            **raw,
            redis=None if redis is None else RedisSource(**redis),
            limits=limits,
            definition_limits=definition_limits,
        )

    def for_worker(self, port: int, management_port: int, metrics_dir: str) -> ServeConfig:
        return dataclasses.replace(
            self,
            port=port,
            management_port=management_port,
            workers=1,
            worker=True,
            metrics_dir=metrics_dir,
        )
