"""Every setting, declared once and resolved in one place.

    Option("port", int, 8013, "gRPC port")      declared in a Group (LOGGING, REDIS, ...)
        │
        ├─► add_options(parser, groups)         --port (unset unless given: default None)
        ▼
    resolve(args, groups, environ) ─► Settings
        1. the command line                     --port 9000
        2. the environment                      FLAGEDGE_PORT=9000
        3. the config file                      --config FILE (or FLAGEDGE_CONFIG): YAML or
                                                TOML, keys named like the options
        4. the default

A group shared by several commands (the Redis connection, logging) is one tuple here, so
every command that takes it takes the same options, help and variables. ``options_table``
renders the README's table from these declarations (a test keeps the two equal). Commands
also have arguments that are not settings (a flag key, --json, --wait): those stay with
the command in cli/.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from .definitions import DefinitionLimits
from .errors import ConfigError, Problem

_N = TypeVar("_N", int, float)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not true or false")


def _number(
    name: str, kind: Callable[[str], _N], low: float, high: float, what: str
) -> Callable[[str], _N]:
    """A parser of ``kind`` numbers from ``low`` to ``high``, refusing others as not ``what``.
    ``name`` is the parser's ``__name__``, which argparse quotes: invalid NAME value."""

    def parse(text: str) -> _N:
        value = kind(text)
        if not low <= value <= high:  # NaN compares false, so it is refused too
            raise ValueError(f"{text!r} is not {what}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


_INF = float("inf")
_seconds = _number("_seconds", float, 0, _INF, "a number of seconds (0 or more)")
_port = _number("_port", int, 0, 65535, "a port (0-65535)")
_count = _number("_count", int, 1, _INF, "a count (1 or more)")
_count0 = _number("_count0", int, 0, _INF, "a count (0 or more)")
_bytes = _number("_bytes", int, 1, _INF, "a size in bytes (1 or more)")
_limit = _number("_limit", int, 0, _INF, "a limit (0 for none, or more)")
# sys.float_info.max, not infinity: an infinite rate is refused.
_rate = _number("_rate", float, 0, sys.float_info.max, "a rate (0 or more per second)")


def _bounded(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high``."""
    # "parse": the name argparse has always quoted for these options (invalid parse value).
    return _number("parse", int, low, high, f"a number from {low} to {high}")


# What a port option that can be switched off holds when it is off ("off" on the command line,
# in the environment and in a config file).
OFF = -1


def _listener_port(text: str) -> int:
    """A port for a listener that can be turned off: 0 or off turns it off (as flagd's
    option); any binds a free port (what tests and supervised workers on port 0 need)."""
    word = text.strip().lower()
    if word == "off":
        return OFF
    if word == "any":
        return 0
    value = _port(text)
    return OFF if value == 0 else value


def _text(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Option:
    """One setting. ``name`` gives the flag (--name), the variable (FLAGEDGE_NAME, unless
    ``variable`` says otherwise) and the config-file key (name, or with underscores)."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False  # --name alone sets it; the variable and file take true/false
    cli: bool = True  # False: environment and config file only (secrets stay out of `ps`)
    variable: str = ""
    default_text: str = ""  # how the README and --help describe the default
    many: bool = False  # repeatable (--env a --env b); the variable and file: comma-separated

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return self.variable or "FLAGEDGE_" + self.dest.upper()

    def describe_default(self) -> str:
        if self.default_text:
            return self.default_text
        if self.default is None:
            return "none"
        if self.switch:
            return "off" if not self.default else "on"
        return str(self.default)

    def convert(self, raw: Any, where: str) -> Any:
        """A value from the environment or a config file, checked and converted."""
        if self.many:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list):
                items = [raw]
            single = Option(self.name, self.parse, None, self.help, choices=self.choices)
            return tuple(
                single.convert(item.strip() if isinstance(item, str) else item, where)
                for item in items
                if not (isinstance(item, str) and not item.strip())
            )
        try:
            if isinstance(raw, str):
                value = _flag(raw) if self.switch else self.parse(raw)
            elif self.switch and isinstance(raw, bool):
                value = raw
            elif isinstance(raw, bool):
                raise ValueError(
                    f"{raw!r} is not a value for this option (YAML reads unquoted on/off/yes/no "
                    "as booleans: quote them)"
                )
            elif isinstance(raw, list | dict) or raw is None:
                raise ValueError(f"{raw!r} is not a value for this option")
            else:  # a YAML/TOML number: check it as its text would be
                value = self.parse(str(raw))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True, slots=True)
class Group:
    title: str
    used_by: str  # the commands that take this group, for the README's table
    options: tuple[Option, ...]


CONFIG = Option(
    "config",
    _text,
    None,
    "a YAML or TOML file of settings, keyed by option name (below the command line and "
    "the environment, above the defaults)",
    metavar="FILE",
)

LOGGING = Group(
    "Logging",
    "serve, admin",
    (
        Option(
            "log-level",
            str.lower,
            "info",
            "debug, info, warning, error or critical",
            choices=("debug", "info", "warning", "error", "critical"),
        ),
        Option(
            "log-format",
            str.lower,
            "json",
            "json: one object per line (ts, level, event, msg, fields); text: sentences",
            choices=("json", "text"),
        ),
    ),
)

REDIS = Group(
    "Redis control plane",
    "serve, admin, push, kill, restore, rollout, get, status, audit, stale",
    (
        Option(
            "redis",
            _text,
            None,
            "redis://[user:password@]host:port[/db], rediss://..., unix://..., or "
            "redis+sentinel://[user:password@]host:port,.../MASTER; with a password, prefer "
            "FLAGEDGE_REDIS_URL or --redis-url-file to this option, which `ps` shows",
            metavar="URL",
            variable="FLAGEDGE_REDIS_URL",
        ),
        Option(
            "redis-url-file",
            _text,
            None,
            "a file whose first line is the Redis URL (a mounted secret); --redis or "
            "FLAGEDGE_REDIS_URL, when given, comes first",
            metavar="FILE",
        ),
        Option("env", _text, None, "environment: the key prefix flagedge:NAME:", metavar="NAME"),
        Option(
            "sentinel",
            _text,
            None,
            "Sentinel addresses; --redis then only gives credentials",
            metavar="HOST:PORT,...",
        ),
        Option("sentinel-master", _text, None, "the Sentinel master name", metavar="NAME"),
        Option(
            "sentinel-password",
            _text,
            None,
            "the sentinels' own password, when it differs from the data nodes'",
            cli=False,
        ),
    ),
)

EDGE = Group(
    "Edges fed by Redis (serve --redis)",
    "serve",
    (
        Option(
            "lkg-file",
            _text,
            None,
            "last-known-good state, served when Redis is unreachable at start",
            metavar="FILE",
            default_text="STATE_DIR/lkg-ENV.json",
        ),
        Option(
            "state-dir",
            _text,
            None,
            "where the default last-known-good file lives",
            metavar="DIR",
            default_text="$XDG_STATE_HOME/flagedge or ~/.local/state/flagedge",
        ),
        Option(
            "redis-check-interval",
            _seconds,
            2.0,
            "seconds between version checks that catch lost messages",
            metavar="S",
        ),
        Option(
            "usage-interval",
            _seconds,
            30.0,
            "seconds between reports of evaluation counts to Redis, for `flagedge stale`",
            metavar="S",
        ),
    ),
)

SERVE = Group(
    "Serving",
    "serve",
    (
        Option(
            "flags",
            _text,
            None,
            "flag definitions (JSON or YAML), reloaded on change",
            metavar="FILE",
            default_text="the bundled example flags",
        ),
        Option("host", _text, "0.0.0.0", "address to listen on (as flagd: every interface)"),
        Option(
            "port",
            _port,
            8013,
            "gRPC port (flagedge.v1, flagd evaluation v1/v2); 0: any",
            metavar="PORT",
        ),
        Option(
            "management-port",
            _port,
            8014,
            "HTTP port for /healthz, /readyz and /metrics (Prometheus); 0: any",
            metavar="PORT",
        ),
        Option(
            "sync-port",
            _listener_port,
            8015,
            "gRPC port for flagd's sync service (flagd.sync.v1), which in-process providers "
            "read; 0 or off: none; any: a free port",
            metavar="PORT",
        ),
        Option(
            "workers",
            _count,
            None,
            "server processes sharing the ports",
            metavar="N",
            default_text="one per CPU",
        ),
        Option(
            "poll-interval",
            _seconds,
            0.5,
            "seconds between checks of the flags file for changes",
            metavar="S",
        ),
        Option("grace", _seconds, 10.0, "seconds to drain in-flight calls on SIGTERM", metavar="S"),
        Option(
            "stream-deadline",
            _seconds,
            0.0,
            "seconds after which a flagd EventStream or SyncFlags stream ends with "
            "DEADLINE_EXCEEDED, as flagd's option; 0: never",
            metavar="S",
        ),
        Option(
            "restart-backoff",
            _seconds,
            0.5,
            "seconds before a dead worker is replaced, doubling per death up to 10 s",
            metavar="S",
        ),
        Option(
            "event-loop",
            str.lower,
            "auto",
            "auto (uvloop when installed), uvloop or asyncio",
            choices=("auto", "uvloop", "asyncio"),
        ),
    ),
)

HTTP = Group(
    "OFREP and Connect over HTTP",
    "serve",
    (
        Option(
            "ofrep-port",
            _listener_port,
            8016,
            "HTTP port for OFREP (/ofrep/v1/...) and flagd's evaluation service over Connect "
            "JSON, as flagd's port 8016; 0 or off: none; any: a free port",
            metavar="PORT",
        ),
        Option(
            "http-max-body",
            _bytes,
            1024 * 1024,
            "largest request body in bytes; larger: 413",
            metavar="BYTES",
        ),
        Option(
            "http-body-timeout",
            _seconds,
            10.0,
            "seconds a client may take to send a request body; slower: 408",
            metavar="S",
        ),
        Option(
            "http-max-streams",
            _count,
            10_000,
            "open OFREP event streams (SSE) per process; more: 503 with Retry-After",
            metavar="N",
        ),
        Option(
            "ofrep-rate",
            _rate,
            0.0,
            "OFREP and Connect calls per second allowed to each token (by name; without an "
            "auth file, to everyone together); over it: 429 with Retry-After; 0: no limit",
            metavar="N",
        ),
        Option(
            "ofrep-burst",
            _count,
            None,
            "calls a token may make at once before --ofrep-rate applies",
            metavar="N",
            default_text="the rate, at least 1",
        ),
    ),
)

LIMITS = Group(
    "Limits",
    "serve",
    (
        Option(
            "max-message-bytes",
            _count,
            4 * 1024 * 1024,
            "largest request message, in bytes (larger: INVALID_ARGUMENT)",
            metavar="BYTES",
        ),
        Option(
            "max-context-bytes",
            _count,
            64 * 1024,
            "largest evaluation context, in bytes (larger: INVALID_ARGUMENT)",
            metavar="BYTES",
        ),
        Option(
            "max-context-depth",
            _bounded(1, 512),
            32,
            "deepest nesting of an evaluation context (deeper: INVALID_ARGUMENT)",
            metavar="N",
        ),
        Option(
            "max-context-keys",
            _count,
            1000,
            "keys in one evaluation context, counted at every level (more: INVALID_ARGUMENT)",
            metavar="N",
        ),
        Option(
            "max-batch-cells",
            _count,
            250_000,
            "flags x contexts in one EvaluateBatch or EvaluateStream message",
            metavar="N",
        ),
        Option(
            "max-keys",
            _count,
            10_000,
            "flag keys one EvaluateAll, EvaluateBatch or Watch may name (a key named twice "
            "is evaluated once)",
            metavar="N",
        ),
        Option(
            "max-streams",
            _count,
            10_000,
            "open streaming calls (EventStream, Watch, EvaluateStream) per process; more are "
            "refused with RESOURCE_EXHAUSTED while unary calls go on",
            metavar="N",
        ),
        Option(
            "max-streams-per-connection",
            _count,
            1000,
            "calls in flight on one HTTP/2 connection (a gRPC client queues the rest; a "
            "client that ignores the limit has the excess refused)",
            metavar="N",
        ),
        Option(
            "max-connection-idle",
            _seconds,
            300.0,
            "seconds a connection with no call in flight stays open; 0: for ever",
            metavar="S",
        ),
        Option(
            "keepalive-time",
            _seconds,
            60.0,
            "seconds of quiet on a connection before the server pings the client (a dead "
            "peer is dropped 20 s later); 0: never",
            metavar="S",
        ),
        Option(
            "min-ping-interval",
            _seconds,
            10.0,
            "shortest interval the server accepts between a client's keepalive pings",
            metavar="S",
        ),
        Option(
            "max-ping-strikes",
            _count0,
            2,
            "pings sooner than that before the server closes the connection "
            "(GOAWAY too_many_pings); 0: any number",
            metavar="N",
        ),
    ),
)

SECURITY = Group(
    "Security",
    "serve, admin (certificate, key, client CA, auth file)",
    (
        Option(
            "server-cert-path",
            _text,
            None,
            "TLS certificate chain (PEM) for the gRPC and HTTP listeners; with it, plaintext "
            "connections are refused; re-read when the file changes",
            metavar="FILE",
        ),
        Option(
            "server-key-path",
            _text,
            None,
            "the TLS private key (PEM) for --server-cert-path",
            metavar="FILE",
        ),
        Option(
            "client-ca-path",
            _text,
            None,
            "mutual TLS: require a client certificate signed by this CA (PEM)",
            metavar="FILE",
        ),
        Option(
            "auth-file",
            _text,
            None,
            "client tokens (JSON or YAML: name, sha256, scopes, flags); with it every "
            "evaluation or sync call needs `authorization: Bearer TOKEN`; reloaded on change",
            metavar="FILE",
        ),
        Option(
            "socket-path",
            _text,
            None,
            "also serve gRPC on this Unix socket, for sidecars: plaintext, access is the "
            "file's mode (tokens still apply); with --workers, worker 0 serves it",
            metavar="PATH",
        ),
        Option(
            "socket-mode",
            _text,
            "0660",
            # Only these two: the socket is plaintext, so never open it to other users.
            "file mode of --socket-path: 0660 (its owner and group may connect) or 0600",
            choices=("0660", "0600"),
        ),
        Option(
            "max-streams-per-token",
            _limit,
            100,
            "with --auth-file, open streaming calls (Watch, EvaluateStream, EventStream) one "
            "token name may hold per process; more answer RESOURCE_EXHAUSTED; 0: no limit",
            metavar="N",
        ),
        Option(
            "management-host",
            _text,
            None,
            "address of the management port (plaintext, for probes), e.g. 127.0.0.1",
            metavar="HOST",
            default_text="--host",
        ),
    ),
)

DEFINITION_LIMITS = Group(
    "Definition limits",
    "serve, validate, eval, push, kill, restore, rollout, stale",
    (
        Option(
            "max-definitions-bytes",
            _count,
            16 * 1024 * 1024,
            "largest definitions document (a file, or what an edge reads from Redis), in "
            "bytes; a larger one is refused unread",
            metavar="BYTES",
        ),
        Option(
            "max-rule-depth",
            _bounded(1, 512),
            256,
            "deepest nesting of one flag's targeting (JSON levels, $refs expanded); deeper: "
            "that flag answers PARSE_ERROR",
            metavar="N",
        ),
        Option(
            "max-rule-width",
            _count,
            2_000,
            "arguments of one JSON Logic operator; more: that flag answers PARSE_ERROR",
            metavar="N",
        ),
        Option(
            "max-rule-nodes",
            _count,
            100_000,
            "JSON values in one flag's targeting with every $ref expanded (what an "
            "evaluation may walk); more: that flag answers PARSE_ERROR",
            metavar="N",
        ),
        Option(
            "max-rule-cost",
            _count,
            20_000,
            "operations the compiler may generate for one flag (an evaluator used several "
            "times counts once); more: that flag answers PARSE_ERROR",
            metavar="N",
        ),
    ),
)

DEFINITIONS = Group(
    "Definitions",
    "validate, eval, explain",
    (
        Option(
            "fractional",
            str.lower,
            "v3",
            "fractional bucketing scheme when a file does not set metadata.fractional",
            choices=("v2", "v3"),
        ),
    ),
)

WRITES = Group(
    "Writes to the control plane",
    "push, kill, restore, rollout",
    (
        Option(
            "actor",
            _text,
            None,
            "who the audit stream records (through --admin, the token's identity instead)",
            default_text="$USER@host",
        ),
    ),
)

# The admin service takes the Redis connection but names its environments itself (several).
REDIS_CONNECTION = Group(
    REDIS.title, REDIS.used_by, tuple(o for o in REDIS.options if o.name != "env")
)
ADMIN_SECURITY = Group(
    SECURITY.title,
    SECURITY.used_by,
    tuple(
        o
        for o in SECURITY.options
        if o.name in ("server-cert-path", "server-key-path", "client-ca-path", "auth-file")
    ),
)

ADMIN = Group(
    "Admin service",
    "admin",
    (
        Option(
            "host",
            _text,
            "127.0.0.1",
            "address the admin service listens on (in a config file `host` and `port` are "
            "serve's keys too: give the admin service its own file)",
            variable="FLAGEDGE_ADMIN_HOST",
        ),
        Option(
            "port",
            _port,
            8017,
            "HTTP(S) port of the admin service's API and web UI; 0: any",
            metavar="PORT",
            variable="FLAGEDGE_ADMIN_PORT",
        ),
        Option(
            "env",
            _text,
            (),
            "environments it manages (repeat the option, or comma-separate)",
            metavar="NAME",
            many=True,
            default_text="none (required)",
        ),
        Option(
            "trusted-user-header",
            _text,
            None,
            "a header naming the user, set by an SSO proxy (e.g. X-Forwarded-User); trusted "
            "only from --trusted-proxy addresses. Names in the auth file get its roles, "
            "others viewer",
            metavar="HEADER",
        ),
        Option(
            "trusted-proxy",
            _text,
            (),
            "addresses of the SSO proxy allowed to set --trusted-user-header",
            metavar="ADDRESS",
            many=True,
            default_text="none",
        ),
        Option(
            "session-ttl",
            _seconds,
            28800.0,
            "seconds a web UI login lasts",
            metavar="S",
        ),
        Option(
            "max-body",
            _count,
            4 * 1024 * 1024,
            "largest request body in bytes (a definitions document); larger: 413",
            metavar="BYTES",
        ),
    ),
)

ADMIN_CLIENT = Group(
    "Through the admin service",
    "push, kill, restore, rollout, get, status, audit, stale",
    (
        Option(
            "admin",
            _text,
            None,
            "the admin service's URL: the command uses its API instead of Redis, so the "
            "machine needs no Redis credentials",
            metavar="URL",
            variable="FLAGEDGE_ADMIN_URL",
        ),
        Option(
            "token",
            _text,
            None,
            "the API token for --admin; prefer the variable or --token-file to the option, "
            "which `ps` shows",
            metavar="TOKEN",
        ),
        Option(
            "token-file",
            _text,
            None,
            "a file holding the API token for --admin",
            metavar="FILE",
        ),
    ),
)

ALL_GROUPS: tuple[Group, ...] = (
    SERVE,
    HTTP,
    SECURITY,
    LIMITS,
    EDGE,
    REDIS,
    LOGGING,
    DEFINITIONS,
    DEFINITION_LIMITS,
    WRITES,
    ADMIN,
    ADMIN_CLIENT,
)


def all_options() -> Iterable[Option]:
    yield CONFIG
    for group in ALL_GROUPS:
        yield from group.options


# -- the command line -------------------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser, groups: Sequence[Group]) -> None:
    """Add ``--config`` and each group's options to ``parser``. Nothing gets an argparse
    default: an option not given stays None, so that ``resolve`` can tell."""
    parser.add_argument(
        "--config",
        dest="config",
        default=None,
        metavar="FILE",
        help=f"{CONFIG.help} [{CONFIG.env}]",
    )
    for group in groups:
        section = parser.add_argument_group(group.title)
        for option in group.options:
            if not option.cli:
                continue
            kind: dict[str, Any]
            if option.many:
                kind = {"action": "append", "type": option.parse, "metavar": option.metavar}
            elif option.switch:
                kind = {"action": "store_true"}
            else:
                kind = {"type": option.parse, "choices": option.choices, "metavar": option.metavar}
            section.add_argument(
                f"--{option.name}",
                dest=option.dest,
                default=None,
                help=f"{option.help} [{option.env}; default {option.describe_default()}]",
                **kind,
            )


# -- resolution ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved values by option ``dest``, and where each came from (cli, env, file,
    default): ``settings["port"]``, ``settings.origin["port"]``."""

    values: Mapping[str, Any]
    origin: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def _file_key(key: str) -> str:
    return key.strip().replace("_", "-")


def load_config_file(path: Path) -> dict[str, Any]:
    """A config file's settings, keyed by option name; ConfigError lists every problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            loaded: Any = tomllib.loads(data.decode("utf-8"))
        else:  # YAML, and JSON, which YAML reads
            import yaml

            loaded = yaml.safe_load(data)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except Exception as exc:  # yaml.YAMLError, without importing yaml for TOML users
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: settings are a mapping of option names")
    known = {o.name for o in all_options()}
    values: dict[str, Any] = {}
    problems = []
    for key, value in loaded.items():
        name = _file_key(str(key))
        if name not in known or name == "config":
            problems.append(Problem(str(key), "not a flagedge setting"))
        else:
            values[name] = value
    if problems:
        raise ConfigError(f"config file {path} has unknown settings", problems=problems)
    return values


def resolve(
    args: argparse.Namespace,
    groups: Sequence[Group],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Each option of ``groups``: the command line, else the environment, else the config
    file, else the default. ConfigError for a value that does not parse."""
    env = os.environ if environ is None else environ
    config_path = getattr(args, "config", None) or env.get(CONFIG.env) or None
    from_file = load_config_file(Path(config_path)) if config_path else {}
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for group in groups:
        for option in group.options:
            given = getattr(args, option.dest, None) if option.cli else None
            if given is not None:
                values[option.dest] = tuple(given) if option.many else given
                origin[option.dest] = "cli"
            elif env.get(option.env, "") != "":
                values[option.dest] = option.convert(env[option.env], option.env)
                origin[option.dest] = "env"
            elif option.name in from_file:
                where = f"{config_path}: {option.name}"
                values[option.dest] = option.convert(from_file[option.name], where)
                origin[option.dest] = "file"
            else:
                values[option.dest], origin[option.dest] = option.default, "default"
    return Settings(MappingProxyType(values), MappingProxyType(origin))


# -- settings that combine options ----------------------------------------------------------

_RANK = {"cli": 0, "env": 1, "file": 2, "default": 3}


def redis_url(s: Settings) -> str | None:
    """The Redis URL: --redis (FLAGEDGE_REDIS_URL), or the first line of --redis-url-file
    (FLAGEDGE_REDIS_URL_FILE), whichever was given at the higher level; both at one level
    is refused. ConfigError when the file cannot be read or is empty."""
    url, path = s.get("redis"), s.get("redis_url_file")
    if not path:
        return url or None
    if url:
        mine, theirs = _RANK[s.origin.get("redis", "default")], _RANK[s.origin["redis_url_file"]]
        if mine < theirs:
            return str(url)
        if mine == theirs:
            raise ConfigError("give the Redis URL once: --redis or --redis-url-file, not both")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the Redis URL file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the Redis URL file {path} is not UTF-8 text") from None
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"the Redis URL file {path} is empty")
    return lines[0].strip()


def definition_limits(s: Settings) -> DefinitionLimits:
    """The DEFINITION_LIMITS group's values (defaults for the ones a command lacks)."""
    default = DefinitionLimits()
    return DefinitionLimits(
        max_bytes=s.get("max_definitions_bytes", default.max_bytes),
        max_rule_depth=s.get("max_rule_depth", default.max_rule_depth),
        max_rule_width=s.get("max_rule_width", default.max_rule_width),
        max_rule_nodes=s.get("max_rule_nodes", default.max_rule_nodes),
        max_rule_cost=s.get("max_rule_cost", default.max_rule_cost),
    )


# -- documentation ------------------------------------------------------------------------


def options_table() -> str:
    """The README's table of every setting (Markdown)."""
    rows = [
        "| option | variable | default | what |",
        "|---|---|---|---|",
        f"| `--config` | `{CONFIG.env}` | none | {CONFIG.help} |",
    ]
    for group in ALL_GROUPS:
        rows.append(f"| **{group.title}** | | | *{group.used_by}* |")
        for o in group.options:
            flag = f"`--{o.name}`" if o.cli else "(no flag)"
            default = o.describe_default()
            rows.append(f"| {flag} | `{o.env}` | {default} | {o.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - python -m flagedge.config prints the table
    print(options_table(), end="")
