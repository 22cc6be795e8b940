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
from collections.abc import Mapping
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
class SecurityConfig:
    """TLS and client tokens for every listener (serve/security.py applies them)."""

    server_cert_path: str | None = None
    server_key_path: str | None = None
    client_ca_path: str | None = None
    auth_file: str | None = None
    socket_path: str | None = None
    socket_mode: str = "0660"
    management_host: str | None = None
    max_streams_per_token: int = 100

    @property
    def tls(self) -> bool:
        return self.server_cert_path is not None

    @classmethod
    def from_settings(cls, s: config.Settings) -> SecurityConfig:
        cert, key, ca = tls_paths(s)
        if ca is not None and cert is None:
            raise ConfigError("--client-ca-path (mutual TLS) needs --server-cert-path")
        check_files(s)
        socket_path = s["socket_path"]
        if socket_path is not None:
            where = Path(socket_path)
            if not where.parent.is_dir():
                raise ConfigError(f"--socket-path: {where.parent} is not a directory")
            if where.exists() and not where.is_socket():
                raise ConfigError(f"--socket-path: {socket_path} exists and is not a socket")
        return cls(
            server_cert_path=cert,
            server_key_path=key,
            client_ca_path=ca,
            auth_file=s["auth_file"],
            socket_path=s["socket_path"],
            socket_mode=s["socket_mode"],
            management_host=s["management_host"],
            max_streams_per_token=s["max_streams_per_token"],
        )


def tls_paths(s: config.Settings) -> tuple[str | None, str | None, str | None]:
    """The certificate, key and client CA paths; ConfigError unless certificate and key
    are given together."""
    cert, key, ca = s["server_cert_path"], s["server_key_path"], s["client_ca_path"]
    if (cert is None) != (key is None):
        raise ConfigError("--server-cert-path and --server-key-path go together")
    return cert, key, ca


def check_files(s: config.Settings) -> None:
    """ConfigError for a TLS path or the auth file given that is not a readable file."""
    for name in ("server-cert-path", "server-key-path", "client-ca-path", "auth-file"):
        path = s[name.replace("-", "_")]
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"--{name}: {path} is not a readable file")


# The fields that hold a listener's port: the supervisor reserves each for its workers. A new
# listener adds its field here.
PORT_FIELDS = ("port", "management_port", "sync_port", "ofrep_port")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    flags: str | None
    host: str = "0.0.0.0"
    port: int = 8013
    management_port: int = 8014
    sync_port: int | None = 8015  # None: no sync listener
    workers: int = 1
    poll_interval: float = 0.5
    grace: float = 10.0
    stream_deadline: float = 0.0
    restart_backoff: float = 0.5
    event_loop: str = "auto"
    # OFREP and Connect over HTTP (serve/listeners.py's HttpListener; 0: off)
    ofrep_port: int | None = 8016  # None: no OFREP listener
    http_max_body: int = 1024 * 1024
    http_body_timeout: float = 10.0
    http_max_streams: int = 10_000
    ofrep_rate: float = 0.0
    ofrep_burst: int = 0  # 0: the rate, at least 1
    log_level: str = "info"
    log_format: str = "json"
    redis: RedisSource | None = None
    security: SecurityConfig = dataclasses.field(default_factory=SecurityConfig)
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
            sync_port=None if s["sync_port"] == config.OFF else s["sync_port"],
            workers=max(1, workers),
            poll_interval=s["poll_interval"],
            grace=s["grace"],
            stream_deadline=s["stream_deadline"],
            restart_backoff=s["restart_backoff"],
            event_loop=s["event_loop"],
            ofrep_port=None if s["ofrep_port"] == config.OFF else s["ofrep_port"],
            http_max_body=s["http_max_body"],
            http_body_timeout=s["http_body_timeout"],
            http_max_streams=s["http_max_streams"],
            ofrep_rate=s["ofrep_rate"],
            ofrep_burst=s["ofrep_burst"] or 0,
            log_level=s["log_level"],
            log_format=s["log_format"],
            redis=redis,
            security=SecurityConfig.from_settings(s),
            # Each field of Limits is the setting of the same name (config.LIMITS).
            limits=Limits(**{f.name: s[f.name] for f in dataclasses.fields(Limits)}),
            definition_limits=config.definition_limits(s),
        )

    # -- the hand-off to workers -------------------------------------------------------------

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: str | bytes) -> ServeConfig:
        raw: dict[str, Any] = orjson.loads(data)
        redis = raw.pop("redis", None)
        security = SecurityConfig(**raw.pop("security", {}))
        limits = Limits(**raw.pop("limits", {}))
        definition_limits = DefinitionLimits(**raw.pop("definition_limits", {}))
        return cls(
            **raw,
            redis=None if redis is None else RedisSource(**redis),
            security=security,
            limits=limits,
            definition_limits=definition_limits,
        )

    def ports(self) -> dict[str, int]:
        """Every port this process listens on, by field (a disabled listener has none)."""
        return {name: port for name in PORT_FIELDS if (port := getattr(self, name)) is not None}

    def for_worker(self, ports: Mapping[str, int], metrics_dir: str) -> ServeConfig:
        """The configuration of one worker: the ports the supervisor reserved (a fixed port
        stays; port 0 became one free port that every worker shares)."""
        changes: dict[str, Any] = {
            name: ports.get(name, getattr(self, name)) for name in PORT_FIELDS
        }
        return dataclasses.replace(self, **changes, workers=1, worker=True, metrics_dir=metrics_dir)
