"""Removal candidates (flagedge.lifecycle, ``flagedge stale``): release and experiment
toggles past their ``expires`` date, never ops or permission toggles; with usage counts,
flags nobody evaluates and flags that serve one variant only; ``--fail`` exits 1 when there
are any. From a definitions file here (from Redis, with the edges' counts: test_usage.py)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from flagedge.lifecycle import Usage, find_stale
from tests.support.cli import flagctl

LIFECYCLE: dict[str, Any] = {
    "flags": {
        key: {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "metadata": metadata,
        }
        for key, metadata in {
            "release-expired": {"kind": "release", "owner": "web", "expires": "2026-02-28"},
            "release-expires-today": {"kind": "release", "expires": "2026-03-01"},
            "experiment-ended": {"kind": "experiment", "expires": "2026-01-15T12:00:00"},
            "ops-old": {"kind": "ops", "expires": "2025-01-01"},
            "permission-old": {"kind": "permission", "expires": "2025-01-01"},
            "kindless-expired": {"expires": "2026-02-01"},
            "no-expiry": {"kind": "release"},
        }.items()
    }
}


@pytest.fixture
def lifecycle_file(tmp_path: Path) -> Path:
    path = tmp_path / "lifecycle.json"
    path.write_text(json.dumps(LIFECYCLE))
    return path


def test_stale_lists_expired_release_and_experiment_toggles_but_never_ops_or_permission(
    lifecycle_file: Path,
) -> None:
    code, out, _ = flagctl(
        "stale", "--flags", str(lifecycle_file), "--today", "2026-03-01", "--json"
    )
    assert code == 0
    report = json.loads(out)
    found = {c["flag"]: c for c in report["candidates"]}
    assert sorted(found) == ["experiment-ended", "kindless-expired", "release-expired"]
    assert found["release-expired"]["owner"] == "web"
    assert found["release-expired"]["findings"] == [
        {"rule": "expired", "detail": "release toggle expired on 2026-02-28 (1 day(s) ago)"}
    ]
    assert found["experiment-ended"]["findings"][0]["detail"].startswith("experiment ended on")
    assert report["usage"]["checked"] is False


def test_stale_fail_exits_non_zero_only_when_there_are_candidates(lifecycle_file: Path) -> None:
    argv = ("stale", "--flags", str(lifecycle_file), "--fail")
    code, out, _ = flagctl(*argv, "--today", "2026-03-01")
    assert code == 1
    assert out.startswith("3 removal candidate(s)") and "release-expired" in out
    assert flagctl(*argv, "--today", "2025-12-31")[0] == 0  # nothing expired yet
    assert flagctl("stale", "--flags", str(lifecycle_file), "--today", "2026-03-01")[0] == 0


def test_stale_refuses_bad_input_clearly(lifecycle_file: Path) -> None:
    code, _, err = flagctl("stale", "--flags", str(lifecycle_file), "--today", "March")
    assert code == 2 and "--today" in err
    assert flagctl("stale")[0] == 2


def test_usage_rules_unused_and_single_variant_with_a_fake_today() -> None:
    metadata = {key: flag["metadata"] for key, flag in LIFECYCLE["flags"].items()}
    today = date(2026, 3, 10)
    usage = Usage(
        {
            date(2026, 3, 9): {("no-expiry", "on"): 5, ("ops-old", "off"): 9},
            date(2026, 3, 1): {("no-expiry", "off"): 1},  # outside a 7-day window
            date(2026, 3, 10): {("permission-old", "on"): 2},
        },
        since=date(2026, 3, 1),
    )
    rules = {c.flag: [f.rule for f in c.findings] for c in find_stale(metadata, today, 7, usage)}
    assert rules["no-expiry"] == ["single-variant"]
    assert "ops-old" not in rules and "permission-old" not in rules  # one variant is their job
    assert rules["release-expires-today"] == ["expired", "unused"]
    # ten days of reports cover a 10-day window, not an 11-day one
    assert find_stale(metadata, today, 10, usage) != find_stale(metadata, today, 11, usage)
    assert all(
        f.rule == "expired" for c in find_stale(metadata, today, 11, usage) for f in c.findings
    )
