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
unused. Pure: no clock, no I/O (cli/stale.py and the admin service read the store).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from .model import Metadata, ToggleKind

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

    @classmethod
    def from_store(
        cls, counts: Mapping[str, Mapping[tuple[str, str], int]], since: str | None
    ) -> Usage:
        """From the store's answer: counts by ISO day, and the first day as text."""
        first = None
        if since is not None:
            try:
                first = date.fromisoformat(since)
            except ValueError:
                first = None
        return cls({date.fromisoformat(d): c for d, c in counts.items()}, first)

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


def usage_note(usage: Usage | None, today: date, days: int) -> dict[str, Any]:
    """Whether the usage rules could be checked, and a sentence saying so."""
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


@dataclass(frozen=True, slots=True)
class StaleReport:
    """``flagedge stale``'s answer, assembled once for the CLI and the admin service."""

    source: str
    today: date
    days: int
    usage: Mapping[str, Any]
    candidates: tuple[Candidate, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "source": self.source,
            "today": self.today.isoformat(),
            "days": self.days,
            "usage": dict(self.usage),
            "candidates": [c.to_json() for c in self.candidates],
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> StaleReport:
        """The report as ``to_json`` wrote it (the admin service's answer)."""
        return cls(
            str(body["source"]),
            date.fromisoformat(body["today"]),
            int(body["days"]),
            dict(body["usage"]),
            tuple(
                Candidate(
                    c["flag"],
                    c.get("kind"),
                    c.get("owner"),
                    tuple(Finding(f["rule"], f["detail"]) for f in c.get("findings", ())),
                )
                for c in body.get("candidates", ())
            ),
        )

    def lines(self) -> list[str]:
        head = f"{self.source}, today {self.today.isoformat()}"
        note = self.usage["text"]
        if not self.candidates:
            return [f"no removal candidates ({head}); {note}"]
        out = [f"{len(self.candidates)} removal candidate(s) ({head}); {note}"]
        width = max(len(c.flag) for c in self.candidates)
        for c in self.candidates:
            out.append(f"  {c.flag:<{width}}  {c.kind or '-':<10}  owner {c.owner or '-'}")
            out.extend(f"  {'':<{width}}    {f.rule}: {f.detail}" for f in c.findings)
        return out


def stale_report(
    flags: Mapping[str, Metadata], source: str, today: date, days: int, usage: Usage | None
) -> StaleReport:
    """Removal candidates and the usage note, as one report."""
    return StaleReport(
        source,
        today,
        days,
        usage_note(usage, today, days),
        tuple(find_stale(flags, today, days, usage)),
    )
