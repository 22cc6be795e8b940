"""Operability end to end: /metrics scraped over real HTTP from real gRPC servers, JSON logs
read from real ``flagedge serve`` processes, usage counts in a real redis-server feeding
``flagedge stale``, and ``flagedge audit --flag``. No mocks; every wait polls with a bound."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis_helpers import Edge, RedisServer, flagctl, free_port, wait_until
from server_helpers import DOCUMENT, async_test, build, serving

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2_grpc as v1_grpc
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from flagedge.client import AsyncClient, Client
from flagedge.lifecycle import Usage, find_stale
from flagedge.metrics import ServerMetrics
from flagedge.snapshot import Snapshot, SnapshotHolder
from flagedge.store.redis import RedisAdmin, RedisPlane, parse_target
from flagedge.store.usage import UsageReporter

ENV = "ops"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def evaluations(samples: Samples, flag: str, variant: str, reason: str) -> float:
    key = (("flag", flag), ("reason", reason), ("variant", variant))
    return samples.get(("flagedge_evaluations_total", key), 0.0)


def method_count(samples: Samples, method: str) -> float:
    return samples.get(("flagedge_rpc_duration_seconds_count", (("method", method),)), 0.0)


def gauge(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


# -- metrics from an in-process server ------------------------------------------------------


class TestMetrics:
    @async_test
    async def test_evaluations_are_counted_by_flag_variant_and_reason_on_every_api(self) -> None:
        async with serving(management=True) as (server, channel):
            assert server.management_port is not None
            async with AsyncClient(f"127.0.0.1:{server.port}") as client:
                for _ in range(3):
                    await client.evaluate("targeted-string", {"email": "me@example.com"})
                await client.evaluate("targeted-string", {"email": "me@elsewhere.org"})
                await client.evaluate("nope")
                await client.evaluate("nope")
                await client.evaluate_all({}, keys=["static-bool", "disabled-flag"])
                await client.evaluate_batch(
                    ["static-bool", "shorthand-bool", "missing"],
                    [{"tier": "gold"}, {"tier": "silver"}, {"tier": "gold"}, {}],
                )
            v2_stub = v2_grpc.ServiceStub(channel)
            for _ in range(2):
                await v2_stub.ResolveBoolean(v2.ResolveBooleanRequest(flag_key="static-bool"))
            await v1_grpc.ServiceStub(channel).ResolveString(
                v1.ResolveStringRequest(flag_key="targeted-string")
            )
            samples = await asyncio.to_thread(scrape, server.management_port)

        def count(flag: str, variant: str, reason: str) -> float:
            return evaluations(samples, flag, variant, reason)

        # native unary: 3 blue by targeting; 1 fell through to the default (red)
        assert count("targeted-string", "blue", "TARGETING_MATCH") == 3
        # native 1 + flagd v1 1
        assert count("targeted-string", "red", "DEFAULT") == 2
        assert count("nope", "", "ERROR") == 2
        # EvaluateAll 1 + batch 4 + flagd v2 2
        assert count("static-bool", "on", "STATIC") == 7
        assert count("disabled-flag", "", "DISABLED") == 1
        # batch, per column: gold twice; silver and no tier resolve "false"
        assert count("shorthand-bool", "true", "TARGETING_MATCH") == 2
        assert count("shorthand-bool", "false", "TARGETING_MATCH") == 2
        assert count("missing", "", "ERROR") == 4
        total = sum(v for (name, _), v in samples.items() if name == "flagedge_evaluations_total")
        assert total == 3 + 2 + 2 + 7 + 1 + 2 + 2 + 4

    @async_test
    async def test_each_method_has_a_latency_histogram_counting_its_calls(self) -> None:
        async with serving(management=True) as (server, channel):
            assert server.management_port is not None
            async with AsyncClient(f"127.0.0.1:{server.port}") as client:
                for _ in range(4):
                    await client.evaluate("static-bool")
                await client.evaluate_batch(["static-bool"], [{}])
                await client.evaluate_all({})
            await v2_grpc.ServiceStub(channel).ResolveString(
                v2.ResolveStringRequest(flag_key="targeted-string")
            )
            samples = await asyncio.to_thread(scrape, server.management_port)
        assert method_count(samples, "flagedge.v1.Evaluation/Evaluate") == 4
        assert method_count(samples, "flagedge.v1.Evaluation/EvaluateBatch") == 1
        assert method_count(samples, "flagedge.v1.Evaluation/EvaluateAll") == 1
        assert method_count(samples, "flagd.evaluation.v2.Service/ResolveString") == 1
        assert method_count(samples, "flagd.evaluation.v1.Service/ResolveBoolean") == 0
        inf = (("le", "+Inf"), ("method", "flagedge.v1.Evaluation/Evaluate"))
        assert samples["flagedge_rpc_duration_seconds_bucket", inf] == 4
        assert samples["flagedge_rpc_duration_seconds_sum", inf[1:]] > 0

    @async_test
    async def test_open_streams_are_gauged_per_method(self) -> None:
        async with serving(management=True) as (server, channel):
            port = server.management_port
            assert port is not None
            watch_method = "flagedge.v1.Evaluation/Watch"
            events = v2_grpc.ServiceStub(channel).EventStream(v2.EventStreamRequest())
            assert (await events.read()).type == "provider_ready"
            async with AsyncClient(f"127.0.0.1:{server.port}") as client:
                watch = client.watch()
                assert (await watch.__anext__()).initial
                samples = await asyncio.to_thread(scrape, port)
                assert gauge(samples, "flagedge_active_streams", method=watch_method) == 1
                assert (
                    gauge(
                        samples,
                        "flagedge_active_streams",
                        method="flagd.evaluation.v2.Service/EventStream",
                    )
                    == 1
                )
                await watch.aclose()  # type: ignore[attr-defined]
            events.cancel()

            async def closed() -> bool:
                s = await asyncio.to_thread(scrape, port)
                return all(
                    v == 0 for (name, _), v in s.items() if name == "flagedge_active_streams"
                )

            for _ in range(500):
                if await closed():
                    break
                await asyncio.sleep(0.02)
            assert await closed()

    @async_test
    async def test_snapshot_gauges_follow_the_serving_snapshot(self) -> None:
        holder = SnapshotHolder(build(version=4))
        async with serving(holder, management=True) as (server, _):
            port = server.management_port
            assert port is not None
            samples = await asyncio.to_thread(scrape, port)
            assert gauge(samples, "flagedge_snapshot_version", worker="0") == 4
            assert gauge(samples, "flagedge_snapshot_flags", worker="0") == len(DOCUMENT["flags"])
            assert gauge(samples, "flagedge_seconds_since_last_apply", worker="0") is not None
            smaller = {"flags": {"only": DOCUMENT["flags"]["static-bool"]}}
            holder.install(Snapshot.build(smaller, version=5))
            samples = await asyncio.to_thread(scrape, port)
            assert gauge(samples, "flagedge_snapshot_version", worker="0") == 5
            assert gauge(samples, "flagedge_snapshot_flags", worker="0") == 1
            # no Redis here: no Redis gauges
            assert gauge(samples, "flagedge_serving_stale", worker="0") is None


# -- `flagedge serve`: JSON logs, workers ---------------------------------------------------


def flags_doc(default: str = "on", **metadata: Any) -> dict[str, Any]:
    return {
        "flags": {
            "switch": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": default,
                "metadata": metadata,
            },
            "other": {
                "state": "ENABLED",
                "variants": {"a": "A", "b": "B"},
                "defaultVariant": "a",
            },
        }
    }


class Served:
    """``flagedge serve`` with default (JSON) logs; every stderr line kept."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "flagedge", "serve"),
                "--host=127.0.0.1",
                "--ofrep-port=0",
                *args,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        import threading

        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.lines.append(line)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            lines = list(self.lines)
        return [json.loads(line) for line in lines]  # every line is one JSON object

    def wait_event(self, name: str, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            matching = [
                r
                for r in self.records()
                if r["event"] == name and all(r.get(k) == v for k, v in fields.items())
            ]
            return matching if len(matching) >= count else None

        result: list[dict[str, Any]] = wait_until(f"{count} {name} event(s)", found)
        return result

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(30)
        finally:
            self._thread.join(10)
            if self.process.stderr is not None:
                self.process.stderr.close()


def test_serve_logs_one_json_object_per_line_for_startup_apply_reject_and_shutdown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flags_doc("on")))
    served = Served(
        f"--flags={path}", "--port=0", "--management-port=0", "--workers=1", "--poll-interval=0.05"
    )
    try:
        (startup,) = served.wait_event("startup")
        assert (startup["level"], startup["version"], startup["flags"]) == ("info", 1, 2)
        assert startup["source"] == str(path) and startup["port"] > 0
        datetime.strptime(startup["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")  # ISO 8601, UTC

        path.write_text(json.dumps(flags_doc("nowhere")))  # names no variant: rejected
        (reject,) = served.wait_event("reject")
        assert reject["level"] == "error" and reject["source"] == str(path)
        assert any("nowhere" in p["message"] for p in reject["problems"])
        assert all(set(p) == {"path", "message"} for p in reject["problems"])

        path.write_text(json.dumps(flags_doc("off")))
        (apply,) = served.wait_event("apply")
        assert (apply["version"], apply["flags"], apply["changed"]) == (2, 2, 1)
        assert apply["source"] == str(path)
        assert served.stop() == 0
        assert [r["event"] for r in served.records()][-2:] == ["shutdown", "stopped"]
        assert {"ts", "level", "event", "msg", "logger", "pid"} <= set(served.records()[0])
    finally:
        served.stop()


def test_log_level_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flags_doc("on")))
    management = free_port()
    served = Served(
        f"--flags={path}",
        "--port=0",
        "--workers=1",
        "--poll-interval=0.05",
        "--log-level=warning",
        f"--management-port={management}",
    )
    try:
        ready = f"http://127.0.0.1:{management}/readyz"
        wait_until("serving", lambda: urllib.request.urlopen(ready, timeout=5).status == 200)
        path.write_text("{ not json")
        served.wait_event("reject")
        path.write_text(json.dumps(flags_doc("off")))
        path.write_text("{ broken again")
        served.wait_event("reject", count=2)
    finally:
        assert served.stop() == 0
    assert {r["level"] for r in served.records()} == {"error"}


def test_with_workers_any_scrape_answers_for_all_of_them(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flags_doc("on")))
    served = Served(f"--flags={path}", "--port=0", "--management-port=0", "--workers=2")
    try:
        starts = served.wait_event("startup", count=2)
        port, management = starts[0]["port"], starts[0]["management_port"]
        assert {s["worker"] for s in starts} == {"0", "1"}
        calls = 40
        for _ in range(calls):  # a new connection each time: the kernel spreads them
            with Client(f"127.0.0.1:{port}") as client:
                assert client.evaluate("switch").value is True

        def all_counted() -> Samples | None:
            samples = scrape(management)
            done = (
                gauge(samples, "flagedge_workers") == 2
                and evaluations(samples, "switch", "on", "STATIC") == calls
            )
            return samples if done else None

        samples = wait_until("both workers' counts in one scrape", all_counted)
        for worker in ("0", "1"):
            assert gauge(samples, "flagedge_snapshot_version", worker=worker) == 1
    finally:
        assert served.stop() == 0


# -- `flagedge stale` on a definitions file -------------------------------------------------


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


# -- usage through a real Redis --------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


USAGE_DOC: dict[str, Any] = {
    "flags": {
        "mixed": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "beta"}, True]}, "on", "off"]},
            "metadata": {"kind": "release"},
        },
        "stuck": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"kind": "release"},
        },
        "kill-switch": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"kind": "ops"},
        },
        "forgotten": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "metadata": {"kind": "permission"},
        },
    }
}


def test_usage_reports_add_up_in_redis_per_day_and_feed_stale(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(USAGE_DOC))
    assert flagctl("push", str(path), "--redis", redis_server.url, "--env", ENV)[0] == 0
    snap = Snapshot.build(USAGE_DOC, version=1)
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


def test_a_redis_edge_reports_usage_logs_json_and_exposes_its_redis_gauges(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(USAGE_DOC))
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

        samples = scrape(edge.management_port)
        assert gauge(samples, "flagedge_snapshot_version", worker="0") == 1
        assert gauge(samples, "flagedge_redis_version", worker="0") == 1
        assert gauge(samples, "flagedge_convergence_lag_versions", worker="0") == 0
        assert gauge(samples, "flagedge_serving_stale", worker="0") == 0
        assert gauge(samples, "flagedge_serving_stale_since_timestamp_seconds", worker="0") == 0
        assert gauge(samples, "flagedge_snapshot_compile_seconds", worker="0") is not None

        mark = edge.mark()
        code, _, err = flagctl("kill", "stuck", "--redis", redis_server.url, "--env", ENV)
        assert code == 0, err
        edge.wait_log(r'"event":"override"', since=mark)
        r.set(f"flagedge:{ENV}:definitions", b"{ corrupt")
        r.incr(f"flagedge:{ENV}:version")
        edge.wait_log(r'"event":"reject"', since=mark)

        before = time.time()
        redis_server.kill()

        def stale_since() -> float | None:
            s = scrape(edge.management_port)
            if gauge(s, "flagedge_serving_stale", worker="0") == 1:
                return gauge(s, "flagedge_serving_stale_since_timestamp_seconds", worker="0")
            return None

        since = wait_until("the edge to report serving stale", stale_since)
        assert since >= before - 1
        redis_server.start()
        edge.wait_log(r'"event":"reconnect"', since=mark)
    finally:
        assert edge.stop() == 0
    records = [json.loads(line) for line in edge.log]  # every line parses
    by_event = {r["event"]: r for r in records}
    assert by_event["apply"]["source"] == "redis" and by_event["apply"]["flags"] == 4
    override = by_event["override"]
    assert (override["flag"], override["override"], override["version"]) == (
        "stuck",
        {"kind": "kill"},
        2,
    )
    reject = by_event["reject"]
    assert reject["rejected_version"] == 3 and reject["problems"][0]["path"] == "definitions"
    assert {"startup", "redis_unavailable", "resync", "shutdown", "stopped"} <= set(by_event)


def test_audit_shows_who_changed_what_filtered_by_flag(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(USAGE_DOC))

    def ctl(*argv: str) -> tuple[int, str, str]:
        actor = ("--actor", "ana@ops") if argv[0] in ("push", "kill", "restore") else ()
        return flagctl(*argv, "--redis", redis_server.url, "--env", ENV, *actor)

    assert ctl("push", str(path))[0] == 0
    assert ctl("kill", "stuck")[0] == 0
    assert ctl("kill", "mixed")[0] == 0
    assert ctl("restore", "stuck")[0] == 0
    code, out, _ = ctl("audit", "--flag", "stuck")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert "ana@ops restore stuck" in lines[0] and "ana@ops kill stuck" in lines[1]
    assert lines[0][:4].isdigit() and "T" in lines[0].split()[0]  # an ISO time first
    code, out, _ = ctl("audit", "--json")
    entries = json.loads(out)["entries"]
    assert [e["action"] for e in entries] == ["restore", "kill", "kill", "push"]
    assert all(e["actor"] == "ana@ops" for e in entries)


def test_batch_counting_by_column_agrees_with_a_cell_by_cell_count() -> None:
    from collections import Counter

    from flagedge.metrics import EvaluationCounter

    snap = build()
    keys = [*snap.keys, "missing"]
    contexts = [
        {"targetingKey": f"user-{i}", "email": f"u{i}@example.com" if i % 3 else "x@y.z"}
        | ({"tier": "gold"} if i % 2 else {})
        | ({"want": "pi"} if i % 5 == 0 else {})
        for i in range(60)
    ]
    batch = snap.evaluate_batch(keys, contexts, 0)
    counter = EvaluationCounter()
    counter.record_batch(batch)
    expected: Counter[tuple[str, str, str]] = Counter()
    for c in range(len(contexts)):
        for f, key in enumerate(keys):
            variant, _, reason, _ = batch.cell(c, f)
            expected[key, variant or "", reason.name] += 1
    assert counter.totals == dict(expected)
