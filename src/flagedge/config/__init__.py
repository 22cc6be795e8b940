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

    options.py      what a setting is: Option, Group, the value parsers
    groups.py       every group's declarations (SERVE, HTTP, REDIS, LOGGING, ...)
    resolution.py   add_options, resolve -> Settings; redis_url and definition_limits, which
                    combine several options
    table.py        options_table: the README's table (``python -m flagedge.config``)

Commands also have arguments that are not settings (a flag key, --json, --wait): those stay
with the command in cli/. Callers import the package (``from flagedge import config``) and use
the names it re-exports below.
"""

from __future__ import annotations

from .groups import (
    ADMIN,
    ADMIN_CLIENT,
    ADMIN_SECURITY,
    ALL_GROUPS,
    CONFIG,
    DEFINITION_LIMITS,
    DEFINITIONS,
    EDGE,
    HTTP,
    LIMITS,
    LOGGING,
    REDIS,
    REDIS_CONNECTION,
    SECURITY,
    SERVE,
    WRITES,
    all_options,
)
from .options import OFF, Group, Option
from .resolution import (
    Settings,
    add_options,
    definition_limits,
    load_config_file,
    redis_url,
    resolve,
)
from .table import options_table

__all__ = [
    "ADMIN",
    "ADMIN_CLIENT",
    "ADMIN_SECURITY",
    "ALL_GROUPS",
    "CONFIG",
    "DEFINITIONS",
    "DEFINITION_LIMITS",
    "EDGE",
    "HTTP",
    "LIMITS",
    "LOGGING",
    "OFF",
    "REDIS",
    "REDIS_CONNECTION",
    "SECURITY",
    "SERVE",
    "WRITES",
    "Group",
    "Option",
    "Settings",
    "add_options",
    "all_options",
    "definition_limits",
    "load_config_file",
    "options_table",
    "redis_url",
    "resolve",
]
