"""The ``flagedge`` command: serve, evaluate and validate flag definitions; push, kill,
restore, rollout, get, status and audit on the Redis control plane (control.py, which has
its own exit codes: 1 not converged, 2 invalid input, 3 Redis unreachable); stale, the
removal candidates (lifecycle.py: 1 with --fail when there are any); bench load, the load
generator (bench/).

Exit codes: 0 success; 1 the definitions have problems (validate); 2 bad input or usage.
Errors are one clear message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from .snapshot import Snapshot
from .errors import DefinitionError, FlagedgeError
from .hashing import Scheme
from .model import FlagType
from .store.file import load_document


def bundled_flags_path() -> Path:
    """The example flag set shipped inside the package."""
    return Path(str(importlib.resources.files("flagedge") / "examples" / "flags.json"))


def _fail(message: str, code: int = 2) -> int:
    print(f"flagedge: {message}", file=sys.stderr)
    return code


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def cmd_validate(args: argparse.Namespace) -> int:
    path = args.file
    try:
        doc = load_document(path)
        snap = Snapshot.build(doc, fractional=args.fractional)
        problems = snap.problems
        fatal = False
    except DefinitionError as exc:
        problems = exc.problems
        fatal = any(p.fatal for p in problems)
    if args.json:
        _print_json(
            {
                "file": str(path),
                "valid": not problems,
                "problems": [
                    {"path": p.path, "message": p.message, "fatal": p.fatal} for p in problems
                ],
            }
        )
    elif problems:
        verdict = "rejected" if fatal else "loads, but some flags will resolve PARSE_ERROR"
        print(f"{path}: {len(problems)} problem(s); {verdict}")
        for p in problems:
            print(f"  {p}")
    else:
        print(f"{path}: ok, {len(snap.flags)} flags")
    return 1 if problems else 0


def cmd_eval(args: argparse.Namespace) -> int:
    path = args.flags or bundled_flags_path()
    try:
        context = orjson.loads(args.context) if args.context else {}
    except orjson.JSONDecodeError as exc:
        return _fail(f"--context is not valid JSON: {exc}")
    if not isinstance(context, dict):
        return _fail("--context must be a JSON object")
    try:
        snap = Snapshot.build(load_document(path), fractional=args.fractional)
    except DefinitionError as exc:
        return _fail(str(exc))
    flag_type = FlagType(args.type) if args.type else None
    now = args.now if args.now is not None else int(time.time())
    _print_json(snap.evaluate(args.flag, context, now, flag_type).to_json())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import app

    return app.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flagedge",
        description="Feature-flag evaluation edge service (flagd-compatible).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    scheme_help = "fractional bucketing scheme when the file does not set metadata.fractional"

    p = sub.add_parser("validate", help="check a definitions file and list every problem")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--fractional", choices=[s.value for s in Scheme], default="v3", help=scheme_help
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("eval", help="evaluate one flag for a context and print the resolution")
    p.add_argument("flag")
    p.add_argument("--flags", type=Path, help="definitions file (default: the bundled examples)")
    p.add_argument("--context", help='evaluation context as JSON, e.g. \'{"targetingKey":"u1"}\'')
    p.add_argument(
        "--type", choices=[t.value for t in FlagType], help="the type the caller expects"
    )
    p.add_argument("--now", type=int, help="Unix seconds for $flagd.timestamp (default: now)")
    p.add_argument(
        "--fractional", choices=[s.value for s in Scheme], default="v3", help=scheme_help
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("serve", help="serve flags over gRPC (flagedge.v1 and flagd v1/v2)")
    try:
        from .server import app
    except ImportError as exc:  # pragma: no cover - a broken install
        reason = str(exc)
        p.set_defaults(func=lambda _a: _fail(f"the server cannot start: {reason}"))
    else:
        app.add_arguments(p)
        p.set_defaults(func=cmd_serve)

    from . import control, lifecycle
    from .bench import cli as bench

    control.add_commands(sub)
    lifecycle.add_command(sub)
    bench.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except FlagedgeError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
