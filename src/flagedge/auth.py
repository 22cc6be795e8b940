"""Client identities: the auth file, its tokens, their scopes, roles and flag prefixes.

    auth file (JSON or YAML), reloaded when it changes:
      {"tokens": [{"name": "checkout-service",
                   "sha256": "<hex SHA-256 of the token>",
                   "scopes": ["evaluate"],            # evaluate, sync
                   "roles": ["operator"],             # admin service: viewer, operator, editor
                   "flags": ["checkout-", "pricing-"]}]}   # optional: key prefixes it sees

    presented token ──sha256──► digest ──table──► Identity | None
                                         (hmac.compare_digest on the entry found)

The file holds digests, never tokens: a token is shown once, by ``flagedge token new``, and
exists afterwards only with its holder. ``name`` is what logs, metrics and audit entries
call the caller. Without an auth file every caller is ANONYMOUS: every scope, every flag,
every role (the listeners are open, as before security was configured).

Pure apart from AuthFile, which reads and re-reads the file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from .errors import DefinitionError, Problem
from .logs import event

log = logging.getLogger("flagedge.auth")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_sha256 = hashlib.sha256  # bound once: identify runs on every call


class Scope(StrEnum):
    """What a token may call on the edges."""

    EVALUATE = "evaluate"  # every evaluation call: native and flagd, unary and streams, OFREP
    SYNC = "sync"  # flagd's sync service (in-process providers: the rules themselves)


class Role(StrEnum):
    """What a person may do in the admin service; each role includes the ones before it."""

    VIEWER = "viewer"  # read flags, audit, edges, the stale report
    OPERATOR = "operator"  # also kill, restore, rollout
    EDITOR = "editor"  # also edit definitions and permission lists, push

    def allows(self, needed: Role) -> bool:
        order = (Role.VIEWER, Role.OPERATOR, Role.EDITOR)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. ``flags`` empty: every flag."""

    name: str
    scopes: frozenset[Scope]
    roles: frozenset[Role] = frozenset()
    flags: tuple[str, ...] = ()

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes

    def has_role(self, needed: Role) -> bool:
        return any(role.allows(needed) for role in self.roles)

    def sees(self, key: str) -> bool:
        """Whether this caller may see flag ``key`` (its prefixes; none means all)."""
        return not self.flags or key.startswith(self.flags)

    @property
    def unrestricted(self) -> bool:
        return not self.flags


ANONYMOUS = Identity("anonymous", frozenset(Scope), frozenset(Role))


def digest(token: str) -> str:
    """The hex SHA-256 of a token, as the auth file stores it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A fresh random token: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


# -- the table ------------------------------------------------------------------------------


def _strings(value: Any, path: str, problems: list[Problem]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem(path, "must be a list of strings"))
        return []
    return list(value)


def _enums(
    value: Any, path: str, kind: type[Scope] | type[Role], problems: list[Problem]
) -> list[Any]:
    out = []
    for i, item in enumerate(_strings(value, path, problems)):
        try:
            out.append(kind(item))
        except ValueError:
            names = ", ".join(k.value for k in kind)
            problems.append(Problem(f"{path}[{i}]", f"{item!r} is not one of {names}"))
    return out


class TokenTable:
    """The identities of one auth file, by token digest."""

    __slots__ = ("_by_digest", "identities")

    def __init__(self, entries: Mapping[bytes, Identity]) -> None:
        # A private dict, never changed after this (a new file makes a new table): a plain
        # dict's lookup is the cheaper one, and this runs on every call.
        self._by_digest = {k: (k, v) for k, v in entries.items()}
        self.identities = tuple(entries.values())

    @classmethod
    def parse(cls, document: Any, source: str = "auth file") -> TokenTable:
        """Validate an auth document; DefinitionError lists every problem by path."""
        problems: list[Problem] = []
        if not isinstance(document, dict):
            raise DefinitionError([Problem("", "an auth file is an object with tokens")], source)
        tokens = document.get("tokens")
        unknown = sorted(set(document) - {"tokens"})
        if unknown:
            problems.append(Problem("", f"unknown field(s): {', '.join(map(str, unknown))}"))
        if not isinstance(tokens, list):
            problems.append(Problem("tokens", "is required: a list of token entries"))
            tokens = []
        entries: dict[bytes, Identity] = {}
        names: set[str] = set()
        for i, entry in enumerate(tokens):
            path = f"tokens[{i}]"
            if not isinstance(entry, dict):
                problems.append(Problem(path, "a token entry is an object"))
                continue
            before = len(problems)
            extra = sorted(set(entry) - {"name", "sha256", "scopes", "roles", "flags"})
            if extra:
                problems.append(Problem(path, f"unknown field(s): {', '.join(map(str, extra))}"))
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                problems.append(Problem(f"{path}.name", "is required: the caller's name"))
            elif name in names:
                problems.append(Problem(f"{path}.name", f"{name!r} is used twice"))
            else:
                names.add(name)
            hexdigest = entry.get("sha256")
            if not isinstance(hexdigest, str) or not _HEX64.fullmatch(hexdigest.lower()):
                problems.append(
                    Problem(f"{path}.sha256", "is required: 64 hex digits (SHA-256 of the token)")
                )
            scopes = _enums(entry.get("scopes"), f"{path}.scopes", Scope, problems)
            roles = _enums(entry.get("roles"), f"{path}.roles", Role, problems)
            flags = _strings(entry.get("flags"), f"{path}.flags", problems)
            if not scopes and not roles and len(problems) == before:
                problems.append(Problem(path, "grants nothing: give it scopes or roles"))
            if len(problems) > before:
                continue
            assert isinstance(name, str) and isinstance(hexdigest, str)
            key = bytes.fromhex(hexdigest.lower())
            if key in entries:
                problems.append(Problem(f"{path}.sha256", "the same token is listed twice"))
                continue
            entries[key] = Identity(name, frozenset(scopes), frozenset(roles), tuple(flags))
        if problems:
            raise DefinitionError(problems, source)
        return cls(entries)

    def identify(self, token: str) -> Identity | None:
        """The identity a presented token belongs to, or None."""
        presented = _sha256(token.encode("utf-8", "surrogatepass")).digest()
        # Looked up by digest (a timing of the lookup says nothing about a token: matching
        # digests would need a preimage), then compared in constant time all the same.
        found = self._by_digest.get(presented)
        if found is None or not hmac.compare_digest(found[0], presented):
            return None
        return found[1]


def load_table(path: Path) -> TokenTable:
    """Read and validate an auth file (JSON, or YAML by extension)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DefinitionError([Problem("", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            document = yaml.safe_load(data)
        else:
            document = orjson.loads(data)
    except Exception as exc:  # JSON or YAML syntax: one problem, never the file's text
        # Only the error's kind: a parser's message can quote the file, which holds secrets'
        # digests at most, but a mistyped file may hold a token pasted by hand.
        problem = Problem("", f"{path} does not parse ({type(exc).__name__})")
        raise DefinitionError([problem]) from None
    return TokenTable.parse(document, str(path))


class AuthFile:
    """The auth file, re-read when its (inode, mtime, size) changes; a file that fails
    validation is logged and refused, and the last good table stays in force."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature = self._stat()
        self.table = load_table(path)  # at start, a bad file is a configuration error

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when a new table is in force."""
        signature = self._stat()
        if signature is None or signature == self._signature:
            return False
        self._signature = signature
        try:
            table = load_table(self.path)
        except DefinitionError as exc:
            event(
                log,
                logging.ERROR,
                "reject",
                "rejected auth file %s: %d problem(s); the previous tokens stay in force: %s",
                self.path,
                len(exc.problems),
                "; ".join(str(p) for p in exc.problems),
                source=str(self.path),
                problems=[{"path": p.path, "message": p.message} for p in exc.problems],
            )
            return False
        self.table = table
        event(
            log,
            logging.INFO,
            "auth",
            "loaded auth file %s: %d token(s)",
            self.path,
            len(table.identities),
            tokens=len(table.identities),
            names=sorted(i.name for i in table.identities),
        )
        return True


def entry_for(
    name: str,
    token: str,
    scopes: Iterable[Scope | str] = (),
    roles: Iterable[Role | str] = (),
    flags: Iterable[str] = (),
) -> dict[str, Any]:
    """The auth-file entry for ``token`` (its digest, never the token)."""
    entry: dict[str, Any] = {"name": name, "sha256": digest(token)}
    if scopes:
        entry["scopes"] = [Scope(s).value for s in scopes]
    if roles:
        entry["roles"] = [Role(r).value for r in roles]
    flags = list(flags)
    if flags:
        entry["flags"] = flags
    return entry
