"""What every command shares: printing, the one refusal path, settings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .. import config
from ..errors import ConfigError, ExitCode, Refusal


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def out(args: argparse.Namespace, value: Mapping[str, Any], text: str) -> None:
    """``value`` as JSON with --json, else ``text``."""
    if getattr(args, "json", False):
        print_json(value)
    else:
        print(text)


def refuse(args: argparse.Namespace, exc: Refusal) -> int:
    """Say why a command stops (stderr; with --json also a JSON object on stdout) and return
    its exit code."""
    if getattr(args, "json", False):
        print_json(
            {
                "ok": False,
                "error": str(exc),
                "problems": [{"path": p.path, "message": p.message} for p in exc.problems],
            }
        )
    print(f"flagedge: {exc}", file=sys.stderr)
    for p in exc.problems:
        print(f"  {p}", file=sys.stderr)
    return int(exc.code)


def settings(args: argparse.Namespace, groups: Sequence[config.Group]) -> config.Settings:
    """The command's settings, resolved (ConfigError, exit 2, for a value that is wrong)."""
    return config.resolve(args, groups)


def require(value: Any, what: str) -> Any:
    if value in (None, ""):
        raise ConfigError(f"no {what} given")
    return value


def fail(message: str, code: ExitCode = ExitCode.INVALID) -> int:
    print(f"flagedge: {message}", file=sys.stderr)
    return int(code)
