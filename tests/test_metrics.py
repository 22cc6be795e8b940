"""Prometheus metrics (flagedge.metrics), scraped over real HTTP from /metrics: evaluations
counted by flag, variant and reason on every API, a latency histogram per method, open
streams, snapshot gauges; with workers, any scrape answers for all of them; a Redis edge's
gauges (and its JSON log events) follow Redis going away and coming back."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2_grpc as v1_grpc
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from flagedge.client import AsyncClient, Client
from flagedge.metrics import EvaluationCounter
from flagedge.snapshot import Snapshot, SnapshotHolder
from tests.support.cli import flagctl
from tests.support.documents import DOCUMENT, TOGGLES, build, switch_and_other
from tests.support.processes import Edge, ServeProcess
from tests.support.redis_server import RedisServer
from tests.support.server import async_test, serving
from tests.support.wait import wait_until

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


# -- an in-process server -------------------------------------------------------------------


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


def test_batch_counting_by_column_agrees_with_a_cell_by_cell_count() -> None:
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


# -- `flagedge serve` processes ---------------------------------------------------------------


def test_with_workers_any_scrape_answers_for_all_of_them(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(switch_and_other("on")))
    served = ServeProcess(f"--flags={path}", "--port=0", "--management-port=0", "--workers=2")
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


def test_a_redis_edges_gauges_and_json_logs_follow_redis_going_away_and_coming_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(TOGGLES))
    assert flagctl("push", str(path), "--redis", redis_server.url, "--env", ENV)[0] == 0
    edge = Edge(redis_server.url, ENV, tmp_path / "lkg.json").wait_serving()
    try:
        r = redis_server.client()
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
