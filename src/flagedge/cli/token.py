"""``flagedge token new``: a fresh client token, shown once, and its auth-file entry."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import orjson

from ..auth import Role, Scope, TokenTable, entry_for, new_token
from ..errors import DefinitionError, ExitCode, Refusal
from .common import out


def _add_to(path: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` to a JSON auth file (made if missing), checked as the services will
    read it, and replaced in one rename."""
    if path.suffix.lower() in (".yaml", ".yml"):
        raise Refusal(f"--add-to writes JSON auth files; add the entry to {path} by hand")
    document: Any = {"tokens": []}
    if path.exists():
        try:
            document = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise Refusal(f"--add-to: cannot read {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("tokens"), list):
        raise Refusal(f"--add-to: {path} is not an auth file (an object with a tokens list)")
    document["tokens"].append(entry)
    try:
        TokenTable.parse(document, str(path))
    except DefinitionError as exc:
        raise Refusal(f"{path} would be invalid; nothing written", problems=exc.problems) from None
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(temp, path)


def _save(path: Path, token: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")


def cmd_token_new(args: argparse.Namespace) -> int:
    if not args.scope and not args.role:
        raise Refusal("a token needs at least one --scope or --role")
    token = new_token()
    entry = entry_for(args.name, token, args.scope or (), args.role or (), args.flags or ())
    line = orjson.dumps(entry).decode()
    if args.add_to is not None:
        _add_to(args.add_to, entry)
    if args.save is not None:
        _save(args.save, token)
    lines = (
        [f"token for {args.name} saved to {args.save} (mode 600; flagedge keeps only its SHA-256)"]
        if args.save is not None
        else [
            f"token for {args.name} (shown once: store it as a secret; flagedge keeps only "
            "its SHA-256):",
            f"  {token}",
        ]
    )
    if args.add_to is not None:
        lines.append(f"its entry is added to {args.add_to}")
    else:
        lines += ['add this entry to the auth file\'s "tokens" list:', f"  {line}"]
    body: dict[str, Any] = {"name": args.name, "entry": entry}
    if args.save is None:
        body["token"] = token
    out(args, body, "\n".join(lines))
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
    p.add_argument(
        "--add-to", type=Path, metavar="AUTH_FILE", help="append the entry to this JSON auth file"
    )
    p.add_argument(
        "--save",
        type=Path,
        metavar="FILE",
        help="write the token to FILE (mode 600) instead of printing it, e.g. for --token-file",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_token_new)
