"""The ``flagedge`` command.

    flagedge validate | eval            definitions, in process            (cli/core.py)
    flagedge serve                      the edge service                   (cli/serve.py -> serve/)
    flagedge push | kill | restore | rollout | get | status | audit
                                        the Redis control plane            (cli/control.py)
    flagedge stale                      removal candidates                 (cli/stale.py)
    flagedge token new                  a client token for the auth file   (cli/token.py)
    flagedge admin | explain            the admin service; why a flag answers what it does
                                                                           (cli/admin.py -> admin/)
    flagedge bench load                 the load generator                 (bench/cli.py)

Settings (ports, Redis, logging...) resolve through flagedge.config: the command line, then
FLAGEDGE_* variables, then --config FILE, then the default. Every command exits with
errors.ExitCode: 0 success; 1 not converged, or a check that found something; 2 invalid
input or usage; 3 Redis unreachable. A refusal is one clear message on stderr (and, with
--json, a JSON object on stdout), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import DefinitionError, ExitCode, FlagedgeError, Refusal, StoreUnavailable
from . import common


def build_parser() -> argparse.ArgumentParser:
    from ..bench import cli as bench
    from . import admin, control, core, serve, stale, token

    parser = argparse.ArgumentParser(
        prog="flagedge",
        description="Feature-flag evaluation edge service (flagd-compatible).",
    )
    parser.add_argument("--version", action="version", version=f"flagedge {__version__}")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="the command; flagedge COMMAND --help for its options",
    )
    core.add_commands(sub)
    serve.add_command(sub)
    control.add_commands(sub)
    stale.add_command(sub)
    token.add_command(sub)
    admin.add_commands(sub)
    bench.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except Refusal as exc:
        return common.refuse(args, exc)
    except DefinitionError as exc:
        return common.refuse(args, Refusal("invalid input", ExitCode.INVALID, exc.problems))
    except StoreUnavailable as exc:
        return common.refuse(args, Refusal(str(exc), ExitCode.UNREACHABLE))
    except FlagedgeError as exc:
        return common.refuse(args, Refusal(str(exc)))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILED
    return code
