"""``flagedge validate`` and ``flagedge eval``: definitions, in process, no server."""

from __future__ import annotations

import argparse
import importlib.resources
import time
from pathlib import Path
from typing import Any

import orjson

from .. import config
from ..errors import DefinitionError, ExitCode, Refusal
from ..model import FlagType
from ..snapshot import Snapshot
from ..store.file import load_document
from .common import out, print_json, settings

BUNDLED = "examples/flags.json"


def bundled_flags_path() -> Path:
    """The example flag set shipped inside the package."""
    return Path(str(importlib.resources.files("flagedge") / BUNDLED))


def cmd_validate(args: argparse.Namespace) -> int:
    resolved = settings(args, [config.DEFINITIONS, config.DEFINITION_LIMITS])
    limits = config.definition_limits(resolved)
    path = args.file
    snap: Snapshot | None = None
    try:
        document = load_document(path, limits.max_bytes)
        snap = Snapshot.build(document, fractional=resolved["fractional"], limits=limits)
        problems = snap.problems
        fatal = False
    except DefinitionError as exc:
        problems = exc.problems
        fatal = any(p.fatal for p in problems)
    if problems:
        # Soft problems: a flag answers PARSE_ERROR, or a rule answers null or GENERAL.
        verdict = "rejected" if fatal else "loads, but some flags will not answer as written"
        text = "\n".join(
            [f"{path}: {len(problems)} problem(s); {verdict}", *(f"  {p}" for p in problems)]
        )
    else:
        text = f"{path}: ok, {0 if snap is None else len(snap.flags)} flags"
    body: dict[str, Any] = {
        "file": str(path),
        "valid": not problems,
        "problems": [{"path": p.path, "message": p.message, "fatal": p.fatal} for p in problems],
    }
    out(args, body, text)
    return ExitCode.FAILED if problems else ExitCode.OK


def cmd_eval(args: argparse.Namespace) -> int:
    resolved = settings(args, [config.DEFINITIONS, config.DEFINITION_LIMITS])
    fractional, limits = resolved["fractional"], config.definition_limits(resolved)
    path = args.flags or bundled_flags_path()
    try:
        context = orjson.loads(args.context) if args.context else {}
    except orjson.JSONDecodeError as exc:
        raise Refusal(f"--context is not valid JSON: {exc}") from None
    if not isinstance(context, dict):
        raise Refusal("--context must be a JSON object")
    try:
        document = load_document(path, limits.max_bytes)
        snap = Snapshot.build(document, fractional=fractional, limits=limits)
    except DefinitionError as exc:
        raise Refusal(f"{path} is invalid", problems=exc.problems) from None
    flag_type = FlagType(args.type) if args.type else None
    now = args.now if args.now is not None else int(time.time())
    print_json(snap.evaluate(args.flag, context, now, flag_type).to_json())
    return ExitCode.OK


def add_commands(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a definitions file and list every problem")
    p.add_argument("file", type=Path, help="the definitions file (JSON or YAML)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    config.add_options(p, [config.DEFINITIONS, config.DEFINITION_LIMITS])
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("eval", help="evaluate one flag for a context and print the resolution")
    p.add_argument("flag", help="the flag key")
    p.add_argument("--flags", type=Path, help="definitions file (default: the bundled examples)")
    p.add_argument("--context", help='evaluation context as JSON, e.g. \'{"targetingKey":"u1"}\'')
    p.add_argument(
        "--type", choices=[t.value for t in FlagType], help="the type the caller expects"
    )
    p.add_argument("--now", type=int, help="Unix seconds for $flagd.timestamp (default: now)")
    config.add_options(p, [config.DEFINITIONS, config.DEFINITION_LIMITS])
    p.set_defaults(func=cmd_eval)
