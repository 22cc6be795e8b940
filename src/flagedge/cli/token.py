"""``flagedge token new``: a fresh client token, shown once, and its auth-file entry (or,
with ``--add-to FILE``, the entry written into the auth file and the token alone on stdout,
so that ``> token.txt`` keeps it)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from ..auth import Role, Scope, TokenTable, entry_for, new_token
from ..errors import DefinitionError, ExitCode, Refusal
from .common import out


def _add_entry(path: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the auth file at ``path`` (made when missing), checked as a whole
    first and written by a rename, so that an edge never reads half a file. YAML is written
    back as YAML (its comments are not kept)."""
    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    document: Any = {"tokens": []}
    if path.exists():
        try:
            text = path.read_bytes()
            if yaml_file:
                import yaml

                document = yaml.safe_load(text) or {"tokens": []}
            else:
                document = orjson.loads(text)
        except Exception as exc:  # the parser's words could quote the file: its kind only
            raise Refusal(
                f"{path} does not parse ({type(exc).__name__}); nothing written"
            ) from None
    if not isinstance(document, dict) or not isinstance(document.get("tokens", []), list):
        raise Refusal(f"{path} is not an auth file (an object with a tokens list)")
    document = {**document, "tokens": [*document.get("tokens", []), entry]}
    try:
        TokenTable.parse(document, str(path))
    except DefinitionError as exc:
        raise Refusal(f"{path} would be invalid; nothing written", problems=exc.problems) from None
    if yaml_file:
        import yaml

        body = yaml.safe_dump(document, sort_keys=False).encode()
    else:
        body = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        else:
            os.chmod(temp, 0o644 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def cmd_token_new(args: argparse.Namespace) -> int:
    if not args.scope and not args.role:
        raise Refusal("a token needs at least one --scope or --role")
    token = new_token()
    entry = entry_for(args.name, token, args.scope or (), args.role or (), args.flags or ())
    if args.add_to:
        path = Path(args.add_to)
        _add_entry(path, entry)
        if getattr(args, "json", False):
            out(
                args, {"name": args.name, "token": token, "entry": entry, "added_to": str(path)}, ""
            )
        else:
            print(token)
            print(
                f"added {args.name} to {path} (edges re-read it within a second); the token "
                "above is shown once: store it as a secret",
                file=sys.stderr,
            )
        return ExitCode.OK
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
    p.add_argument(
        "--add-to",
        metavar="FILE",
        help="write the entry into this auth file (made if missing; JSON, or YAML by "
        "extension) and print only the token",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_token_new)
