"""Every option group: the settings of each command, declared once.

A group shared by several commands (the Redis connection, logging) is one tuple here, so
every command that takes it takes the same options, help and variables; ``ALL_GROUPS`` is
their order in the README's table (table.py renders it).
"""

from __future__ import annotations

from collections.abc import Iterable

from .options import (
    Group,
    Option,
    _bounded,
    _bytes,
    _count,
    _count0,
    _limit,
    _listener_port,
    _port,
    _rate,
    _seconds,
    _text,
)

CONFIG = Option.text(
    "config",
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
        Option.text(
            "redis",
            "redis://[user:password@]host:port[/db], rediss://..., unix://..., or "
            "redis+sentinel://[user:password@]host:port,.../MASTER; with a password, prefer "
            "FLAGEDGE_REDIS_URL or --redis-url-file to this option, which `ps` shows",
            metavar="URL",
            variable="FLAGEDGE_REDIS_URL",
        ),
        Option.text(
            "redis-url-file",
            "a file whose first line is the Redis URL (a mounted secret); --redis or "
            "FLAGEDGE_REDIS_URL, when given, comes first",
            metavar="FILE",
        ),
        Option.text("env", "environment: the key prefix flagedge:NAME:", metavar="NAME"),
        Option.text(
            "sentinel",
            "Sentinel addresses; --redis then only gives credentials",
            metavar="HOST:PORT,...",
        ),
        Option.text("sentinel-master", "the Sentinel master name", metavar="NAME"),
        Option.text(
            "sentinel-password",
            "the sentinels' own password, when it differs from the data nodes'",
            cli=False,
        ),
    ),
)

EDGE = Group(
    "Edges fed by Redis (serve --redis)",
    "serve",
    (
        Option.text(
            "lkg-file",
            "last-known-good state, served when Redis is unreachable at start",
            metavar="FILE",
            default_text="STATE_DIR/lkg-ENV.json",
        ),
        Option.text(
            "state-dir",
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
        Option.text(
            "flags",
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
        Option.text(
            "server-cert-path",
            "TLS certificate chain (PEM) for the gRPC and HTTP listeners; with it, plaintext "
            "connections are refused; re-read when the file changes",
            metavar="FILE",
        ),
        Option.text(
            "server-key-path",
            "the TLS private key (PEM) for --server-cert-path",
            metavar="FILE",
        ),
        Option.text(
            "client-ca-path",
            "mutual TLS: require a client certificate signed by this CA (PEM)",
            metavar="FILE",
        ),
        Option.text(
            "auth-file",
            "client tokens (JSON or YAML: name, sha256, scopes, flags); with it every "
            "evaluation or sync call needs `authorization: Bearer TOKEN`; reloaded on change",
            metavar="FILE",
        ),
        Option.text(
            "socket-path",
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
        Option.text(
            "management-host",
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
        Option.text(
            "actor",
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
        Option.text(
            "trusted-user-header",
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
        Option.text(
            "admin",
            "the admin service's URL: the command uses its API instead of Redis, so the "
            "machine needs no Redis credentials",
            metavar="URL",
            variable="FLAGEDGE_ADMIN_URL",
        ),
        Option.text(
            "token",
            "the API token for --admin; prefer the variable or --token-file to the option, "
            "which `ps` shows",
            metavar="TOKEN",
        ),
        Option.text(
            "token-file",
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
