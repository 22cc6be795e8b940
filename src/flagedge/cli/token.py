"""``flagedge token new``: a fresh client token, shown once, and its auth-file entry."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from ..auth import Role, Scope, entry_for, new_token
from ..errors import ExitCode, Refusal
from .common import out


def cmd_token_new(args: argparse.Namespace) -> int:
    if not args.scope and not args.role:
        raise Refusal("a token needs at least one --scope or --role")
    token = new_token()
    entry = entry_for(args.name, token, args.scope or (), args.role or (), args.flags or ())
    line = orjson.dumps(entry).decode()
    text = "\n".join(
        [
            f"token for {args.name} (shown once: store it as a secret; flagedge keeps only its "
            "SHA-256):",
            f"  {token}",
            'add this entry to the auth file\'s "tokens" list:',
            f"  {line}",
        ]
    )
    out(args, {"name": args.name, "token": token, "entry": entry}, text)
    return ExitCode.OK


def add_command(sub: Any) -> None:
    p = sub.add_parser("token", help="client tokens for the auth file")
    tokens = p.add_subparsers(
        dest="token_command", required=True, metavar="ACTION", help="new: make a token"
    )
    p = tokens.add_parser(
        "new", help="make a random token (256 bits, URL-safe) and print its auth-file entry"
    )
    p.add_argument("--name", required=True, help="who holds it: logs, metrics and audit say so")
    p.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        help="what it may call on the edges (repeat for several)",
    )
    p.add_argument(
        "--role",
        action="append",
        choices=[r.value for r in Role],
        help="what it may do in the admin service (repeat for several)",
    )
    p.add_argument(
        "--flags",
        nargs="+",
        metavar="PREFIX",
        help="flag key prefixes it may see (default: every flag)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_token_new)
