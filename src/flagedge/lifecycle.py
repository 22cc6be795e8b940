"""The toggle lifecycle: which flags are candidates for removal, and ``flagedge stale``.

    definitions (a file, or Redis)  ─┐
    usage per UTC day (Redis, usage.py) ─┼─► find_stale(flags, today, days, usage) ─► [Candidate]
    today (an input: --today, tests) ─┘

Rules, each one finding:
    expired          a release toggle past its ``expires`` date; an experiment past its end
                     (``expires``); a flag with ``expires`` and no kind likewise
    unused           no evaluations on any edge in the last N days
    single-variant   every evaluation in the last N days served the same variant

Ops toggles (kill switches) and permission toggles are long-lived by design: they never
count as stale by age, and serving one variant is their steady state, so neither rule but
``unused`` applies to them. The usage rules wait until the usage reports cover N days
(``usage:since``), so that a fleet that just started reporting does not call every flag
unused. Pure apart from ``run``: no clock, no I/O.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from .snapshot import Snapshot
from .errors import DefinitionError, FlagedgeError, StoreUnavailable
from .model import Metadata, ToggleKind
from .store.file import load_document
from .store.plane import USAGE_RETENTION_DAYS
from .store.redis import RedisAdmin, parse_target
from .store.sync import build_snapshot

OK, FOUND, INVALID, UNREACHABLE = 0, 1, 2, 3
NO_VARIANT = ""  # the usage name of an answer without a variant (the caller's default)
LONG_LIVED = frozenset({ToggleKind.OPS.value, ToggleKind.PERMISSION.value})


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str  # expired | unused | single-variant
    detail: str


@dataclass(frozen=True, slots=True)
class Candidate:
    flag: str
    kind: str | None
    owner: str | None
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "kind": self.kind,
            "owner": self.owner,
            "findings": [{"rule": f.rule, "detail": f.detail} for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """Evaluation counts per UTC day, and the first day the fleet reported (None: never)."""

    days: Mapping[date, Mapping[tuple[str, str], int]]
    since: date | None

    def covers(self, today: date, days: int) -> bool:
        return self.since is not None and self.since <= today - timedelta(days=days - 1)

    def window(self, today: date, days: int) -> dict[str, dict[str, int]]:
        """{flag: {variant: evaluations}} over the ``days`` days ending with ``today``."""
        out: dict[str, dict[str, int]] = {}
        for offset in range(days):
            for (flag, variant), n in self.days.get(today - timedelta(days=offset), {}).items():
                if n > 0:
                    variants = out.setdefault(flag, {})
                    variants[variant] = variants.get(variant, 0) + n
        return out


def window_days(today: date, days: int) -> list[date]:
    return [today - timedelta(days=offset) for offset in range(days)]


def expiry(metadata: Metadata) -> date | None:
    """The ``expires`` metadata as a date (its day, for a date-time); None when absent or
    unreadable (validation reports those)."""
    raw = metadata.get("expires")
    if not isinstance(raw, str):
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        return None


def _kind(metadata: Metadata) -> str | None:
    kind = metadata.get("kind")
    return kind if isinstance(kind, str) else None


def find_stale(
    flags: Mapping[str, Metadata], today: date, days: int, usage: Usage | None = None
) -> list[Candidate]:
    """Removal candidates among ``flags`` (key -> merged metadata), sorted by key."""
    window = usage.window(today, days) if usage is not None and usage.covers(today, days) else None
    out = []
    for key in sorted(flags):
        metadata = flags[key]
        kind = _kind(metadata)
        findings: list[Finding] = []
        ends = expiry(metadata)
        if kind not in LONG_LIVED and ends is not None and ends < today:
            ago = (today - ends).days
            what = {"experiment": "experiment ended", "release": "release toggle expired"}.get(
                kind or "", "expired"
            )
            findings.append(Finding("expired", f"{what} on {ends.isoformat()} ({ago} day(s) ago)"))
        if window is not None:
            served = window.get(key, {})
            if not served:
                findings.append(Finding("unused", f"no evaluations in the last {days} day(s)"))
            elif len(served) == 1 and kind not in LONG_LIVED:
                ((variant, n),) = served.items()
                name = "no variant (the caller's default)" if variant == NO_VARIANT else variant
                findings.append(
                    Finding(
                        "single-variant",
                        f"served only {name!s} in the last {days} day(s) ({n} evaluation(s))",
                    )
                )
        if findings:
            owner = metadata.get("owner")
            out.append(
                Candidate(key, kind, owner if isinstance(owner, str) else None, tuple(findings))
            )
    return out


# -- the command ---------------------------------------------------------------------------


class _Refused(FlagedgeError):
    def __init__(self, message: str, code: int = INVALID) -> None:
        super().__init__(message)
        self.code = code


def _flags(snap: Snapshot) -> dict[str, Metadata]:
    return {key: flag.metadata for key, flag in snap.flags.items()}


def _from_file(path: Path) -> Snapshot:
    try:
        return Snapshot.build(load_document(path))
    except DefinitionError as exc:
        problems = "; ".join(str(p) for p in exc.problems)
        raise _Refused(f"{path} is invalid: {problems}") from None


def _from_redis(args: argparse.Namespace, today: date, days: int) -> tuple[Snapshot, Usage]:
    if not args.env:
        raise _Refused("no environment given: --env NAME or FLAGEDGE_ENV")
    try:
        target = parse_target(args.redis or "", args.sentinel, args.sentinel_master)
    except ValueError as exc:
        raise _Refused(f"bad Redis address: {exc}") from None
    admin = RedisAdmin(target, args.env)
    try:
        raw = admin.read()
        counts, since = admin.usage([d.isoformat() for d in window_days(today, days)])
    except StoreUnavailable as exc:
        raise _Refused(str(exc), UNREACHABLE) from None
    finally:
        admin.close()
    try:
        snap = build_snapshot(raw)
    except DefinitionError as exc:
        problems = "; ".join(str(p) for p in exc.problems)
        raise _Refused(f"the definitions in Redis are unusable: {problems}") from None
    parsed_since = None
    if since is not None:
        try:
            parsed_since = date.fromisoformat(since)
        except ValueError:
            parsed_since = None
    usage = Usage({date.fromisoformat(d): c for d, c in counts.items()}, parsed_since)
    return snap, usage


def _today(text: str | None) -> date:
    if text is None:
        return datetime.now(UTC).date()  # usage days are UTC days
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Refused(f"--today {text!r} is not a date (YYYY-MM-DD)") from None


def cmd_stale(args: argparse.Namespace) -> int:
    try:
        return _stale(args)
    except _Refused as exc:
        if args.json:
            sys.stdout.write(orjson.dumps({"ok": False, "error": str(exc)}).decode() + "\n")
        print(f"flagedge: {exc}", file=sys.stderr)
        return exc.code


def _stale(args: argparse.Namespace) -> int:
    today = _today(args.today)
    days = args.days
    if not 1 <= days <= USAGE_RETENTION_DAYS:
        raise _Refused(f"--days must be 1 to {USAGE_RETENTION_DAYS} (usage is kept that long)")
    usage: Usage | None = None
    if args.flags is not None:
        snap, source = _from_file(args.flags), str(args.flags)
    elif args.redis or args.sentinel:
        snap, usage = _from_redis(args, today, days)
        source = f"env {args.env!r}"
    else:
        raise _Refused("say where the definitions are: --flags FILE, or --redis URL --env NAME")
    candidates = find_stale(_flags(snap), today, days, usage)
    usage_note = _usage_note(usage, today, days)
    if args.json:
        body = {
            "ok": True,
            "source": source,
            "today": today.isoformat(),
            "days": days,
            "usage": usage_note,
            "candidates": [c.to_json() for c in candidates],
        }
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        head = f"{source}, today {today.isoformat()}"
        if not candidates:
            print(f"no removal candidates ({head}); {usage_note['text']}")
        else:
            print(f"{len(candidates)} removal candidate(s) ({head}); {usage_note['text']}")
            width = max(len(c.flag) for c in candidates)
            for c in candidates:
                print(f"  {c.flag:<{width}}  {c.kind or '-':<10}  owner {c.owner or '-'}")
                for f in c.findings:
                    print(f"  {'':<{width}}    {f.rule}: {f.detail}")
    return FOUND if candidates and args.fail else OK


def _usage_note(usage: Usage | None, today: date, days: int) -> dict[str, Any]:
    if usage is None:
        return {"checked": False, "text": "usage rules need --redis (evaluation counts)"}
    if usage.since is None:
        return {"checked": False, "text": "no edge has reported usage yet: usage rules skipped"}
    covered = (today - usage.since).days + 1
    if not usage.covers(today, days):
        return {
            "checked": False,
            "since": usage.since.isoformat(),
            "text": f"usage covers {max(0, covered)} of {days} day(s): usage rules skipped",
        }
    return {
        "checked": True,
        "since": usage.since.isoformat(),
        "text": f"usage checked over {days} day(s)",
    }


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "stale",
        help="list removal candidates: expired toggles, unused flags, flags stuck on a variant",
    )
    p.add_argument("--flags", type=Path, metavar="FILE", help="definitions file (age rules only)")
    p.add_argument(
        "--redis",
        default=os.environ.get("FLAGEDGE_REDIS_URL") or None,
        metavar="URL",
        help="the control plane: definitions and usage counts [FLAGEDGE_REDIS_URL]",
    )
    p.add_argument("--env", default=os.environ.get("FLAGEDGE_ENV") or None, help="[FLAGEDGE_ENV]")
    p.add_argument("--sentinel", default=os.environ.get("FLAGEDGE_SENTINEL") or None)
    p.add_argument("--sentinel-master", default=os.environ.get("FLAGEDGE_SENTINEL_MASTER") or None)
    p.add_argument(
        "--days",
        type=int,
        default=30,
        help=f"usage window: no evaluations, or one variant, for this many days (1-"
        f"{USAGE_RETENTION_DAYS}; default 30)",
    )
    p.add_argument(
        "--today", metavar="YYYY-MM-DD", help="judge as of this date (default: today, UTC)"
    )
    p.add_argument("--fail", action="store_true", help="exit 1 when there is any candidate (CI)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_stale)
