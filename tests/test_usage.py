"""Usage (flagedge.store.usage): each Redis-fed edge adds its evaluation counts to Redis per
UTC day, kept for 45 days, without counting anything twice; the counts feed ``flagedge
stale``'s usage rules. A real redis-server, real edges, the CLI in process."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flagedge.metrics import ServerMetrics
from flagedge.snapshot import Snapshot, SnapshotHolder
from flagedge.store.redis import RedisAdmin, RedisPlane, parse_target
from flagedge.store.usage import UsageReporter
from tests.support.cli import flagctl
from tests.support.documents import TOGGLES
from tests.support.processes import Edge
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until

ENV = "ops"


def test_usage_reports_add_up_in_redis_per_day_and_feed_stale(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(TOGGLES))
    assert flagctl("push", str(path), "--redis", redis_server.url, "--env", ENV)[0] == 0
    snap = Snapshot.build(TOGGLES, version=1)
    holder = SnapshotHolder(snap)
    march_1 = datetime(2026, 3, 1, 23, tzinfo=UTC).timestamp()
    march_3 = datetime(2026, 3, 3, 1, tzinfo=UTC).timestamp()

    async def two_edges_report() -> None:
        for edge in range(2):  # two edges (or workers), each with its own counters
            metrics = ServerMetrics()
            plane = RedisPlane(parse_target(redis_server.url), ENV)
            now = [march_1]
            reporter = UsageReporter(
                metrics.usage_totals, plane, holder, clock=lambda now=now: now[0]
            )
            for beta in (True, False, False):
                metrics.evaluations.record(snap.evaluate("mixed", {"beta": beta}, 0))
            metrics.evaluations.record(snap.evaluate("stuck", {}, 0))
            metrics.evaluations.record(snap.evaluate("kill-switch", {}, 0))
            metrics.evaluations.record(snap.evaluate("not-a-flag", {}, 0))
            assert await reporter.report() == 4  # the unknown key is not reported
            assert await reporter.report() == 0  # nothing new: nothing counted twice
            if edge == 1:
                now[0] = march_3
                metrics.evaluations.record(snap.evaluate("mixed", {}, 0))
                metrics.evaluations.record(snap.evaluate("mixed", {}, 0))
                assert await reporter.report() == 1
            await plane.close()

    asyncio.run(two_edges_report())
    admin = RedisAdmin(parse_target(redis_server.url), ENV)
    try:
        counts, since = admin.usage(["2026-03-01", "2026-03-02", "2026-03-03"])
    finally:
        admin.close()
    assert since == "2026-03-01"
    assert counts == {
        "2026-03-01": {
            ("mixed", "on"): 2,
            ("mixed", "off"): 4,
            ("stuck", "on"): 2,
            ("kill-switch", "on"): 2,
        },
        "2026-03-02": {},
        "2026-03-03": {("mixed", "off"): 2},
    }

    def stale(*extra: str) -> dict[str, Any]:
        code, out, err = flagctl(
            "stale", "--redis", redis_server.url, "--env", ENV, "--json", *extra
        )
        assert code == 0, err
        report: dict[str, Any] = json.loads(out)
        return report

    report = stale("--today", "2026-03-03", "--days", "3")
    assert report["usage"]["checked"] is True
    rules = {c["flag"]: [f["rule"] for f in c["findings"]] for c in report["candidates"]}
    assert rules == {"stuck": ["single-variant"], "forgotten": ["unused"]}
    # a window longer than the reports cover: usage rules wait
    report = stale("--today", "2026-03-03", "--days", "7")
    assert report["usage"]["checked"] is False and report["candidates"] == []
    code, out, _ = flagctl(
        "stale", "--redis", redis_server.url, "--env", ENV, "--today", "2026-03-03",
        "--days", "3", "--fail",
    )  # fmt: skip
    assert code == 1 and "forgotten" in out and "unused" in out


def test_a_redis_edge_adds_its_evaluation_counts_to_redis_each_usage_interval(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(TOGGLES))
    assert flagctl("push", str(path), "--redis", redis_server.url, "--env", ENV)[0] == 0
    edge = Edge(redis_server.url, ENV, tmp_path / "lkg.json", "--usage-interval=0.1").wait_serving()
    try:
        for _ in range(3):
            assert edge.value("stuck") is True
        assert edge.value("mixed", {"beta": True}) is True
        today = datetime.now(UTC).date().isoformat()
        r = redis_server.client()
        field = json.dumps(["stuck", "on"], separators=(",", ":")).encode()
        wait_until(
            "usage in Redis",
            lambda: r.hget(f"flagedge:{ENV}:usage:{today}", field) == b"3",
        )
        ttl = r.ttl(f"flagedge:{ENV}:usage:{today}")
        assert 40 * 86400 < ttl <= 45 * 86400
    finally:
        assert edge.stop() == 0
