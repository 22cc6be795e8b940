"""``flagedge serve``: settings -> ServeConfig -> the serve package."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .. import config
from ..serve import ServeConfig, run
from ..serve.config import WORKER_CONFIG_ENV
from .common import settings

GROUPS = [
    config.SERVE,
    config.HTTP,
    config.SECURITY,
    config.LIMITS,
    config.DEFINITION_LIMITS,
    config.EDGE,
    config.REDIS,
    config.LOGGING,
]


def cmd_serve(args: argparse.Namespace) -> int:
    if args.worker:
        # A worker of `serve --workers N`: the supervisor resolved everything already.
        return run(ServeConfig.from_json(os.environ[WORKER_CONFIG_ENV]))
    return run(ServeConfig.from_settings(settings(args, GROUPS)))


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve flags over gRPC (flagedge.v1, flagd evaluation v1/v2 and flagd sync) and "
        "HTTP (OFREP)",
        description="Serve flags over gRPC and OFREP/Connect over HTTP, from a file "
        "(--flags, default the bundled examples) or from the Redis control plane "
        "(--redis URL --env NAME).",
    )
    config.add_options(p, GROUPS)
    # Set by the supervisor for its workers.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)
