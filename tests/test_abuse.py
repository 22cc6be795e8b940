"""The abuse suite: a real ``flagedge serve`` process under garbage bytes, half-open
connections, slow readers, thousands of streams, oversized and deep inputs, and hostile
definitions through the file source and through Redis. After each, the server must answer a
normal call, and its resident memory (VmRSS from /proc) must stay under twice its warm
baseline plus 100 MB: a generous bound that catches growth without the input, not timing.

Counts are sized to run in seconds on two cores; nothing here measures speed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge._proto.flagedge.v1 import flagedge_pb2_grpc as pb_grpc
from flagedge.store.plane import Keys
from tests.support.cli import flagctl
from tests.support.documents import document
from tests.support.processes import Edge
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(180)  # a hang fails here instead of holding the suite

SERVING = re.compile(r"serving gRPC on [^ ]+:(\d+), management on [^ ]+:(\d+)")
MAX_STREAMS = 400


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class Served:
    """A ``flagedge serve`` child (one process: --workers 1) with its stderr collected."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "flagedge", "serve", "--workers=1", "--host=127.0.0.1"),
                *("--port=0", "--management-port=0", "--sync-port=off", "--ofrep-port=off"),
                *("--grace=1", *args),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        try:
            found = wait_until("the server to start", self._serving, 60)
        except BaseException:
            self.stop()
            raise
        self.port, self.management_port = int(found.group(1)), int(found.group(2))
        self.baseline = 0

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def _serving(self) -> re.Match[str] | None:
        assert self.process.poll() is None, "".join(self.log)
        for line in self.log:
            if found := SERVING.search(line):
                return found
        return None

    @property
    def pid(self) -> int:
        return self.process.pid

    def warm(self) -> None:
        for _ in range(200):
            self.answers()
        self.baseline = rss_kb(self.pid)

    def answers(self, flag: str = "gate") -> None:
        """A normal call is answered (with a fresh connection: a poisoned one cannot hide
        a server that stopped accepting)."""
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            reply = v2_grpc.ServiceStub(channel).ResolveBoolean(
                v2.ResolveBooleanRequest(flag_key=flag), timeout=20
            )
        assert reply.reason in ("STATIC", "TARGETING_MATCH", "DEFAULT")

    def healthy(self) -> None:
        """Answers on both ports, and memory within 2x its warm baseline plus 100 MB."""
        self.answers()
        with socket.create_connection(("127.0.0.1", self.management_port), timeout=20) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        now = rss_kb(self.pid)
        assert now < 2 * self.baseline + 100 * 1024, (now, self.baseline)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._pump.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()


def flags_document(extra: int = 0) -> dict[str, Any]:
    doc = document(gate="on", other="off")
    doc["flags"]["rule"] = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"if": [{"in": [{"var": "email"}, ["a@x", "b@x"]]}, "on", "off"]},
    }
    for i in range(extra):
        doc["flags"][f"pad{i}"] = {"state": "ENABLED", "variants": {"v": i}, "defaultVariant": "v"}
    return doc


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    path = tmp_path_factory.mktemp("abuse") / "flags.json"
    path.write_text(json.dumps(flags_document(50)))
    server = Served(
        f"--flags={path}",
        "--poll-interval=0.1",
        f"--max-streams={MAX_STREAMS}",
        "--max-definitions-bytes=2000000",
    )
    try:
        server.warm()
        yield server, path
    finally:
        server.stop()
    log = "".join(server.log)
    assert "Traceback" not in log, log[
        max(0, log.index("Traceback") - 500) : log.index("Traceback") + 3000
    ]


def connect_many(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(s)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


# -- the wire ---------------------------------------------------------------------------------


def test_garbage_bytes_on_both_ports_are_dropped(served: tuple[Served, Path]) -> None:
    server, _ = served
    rng = random.Random(11)
    for port in (server.port, server.management_port):
        for n in range(40):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=10) as s,
            ):
                prefix = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" if n % 2 else b""
                s.sendall(prefix + rng.randbytes(64 * 1024))
    server.healthy()


def test_half_open_connections_do_not_stop_the_server(served: tuple[Served, Path]) -> None:
    server, _ = served
    grpc_socks = connect_many(server.port, 200)
    for s in grpc_socks[::2]:
        s.sendall(b"PRI * HTTP/2.0\r\n")  # half a preface, then nothing
    # More than the management port serves at once: the extra ones are closed at once.
    http_socks = connect_many(server.management_port, 300)
    for s in http_socks[::3]:
        s.sendall(b"GET /metr")  # half a request line, then nothing
    try:
        server.answers()
        assert rss_kb(server.pid) < 2 * server.baseline + 100 * 1024
    finally:
        close_all(grpc_socks + http_socks)
    wait_until("the management port to answer again", lambda: _healthz(server), 30)
    server.healthy()


def _healthz(server: Served) -> bool:
    with socket.create_connection(("127.0.0.1", server.management_port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        return s.recv(100).startswith(b"HTTP/1.1 200")


def test_oversized_and_deep_inputs_are_refused(served: tuple[Served, Path]) -> None:
    server, _ = served
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(60):
        deep = {"d": deep}
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.EvaluationStub(channel)
        requests = {
            "message": pb.EvaluateRequest(flag_key="x" * (5 * 1024 * 1024)),
            "bytes": _evaluate({"blob": "y" * 70_000}),
            "depth": _evaluate(deep),
            "keys": _evaluate({f"k{i}": i for i in range(1_500)}),
            "all": pb.EvaluateAllRequest(keys=["gate"] * 20_000),
        }
        for name, request in requests.items():
            for _ in range(5):
                call = stub.EvaluateAll if name == "all" else stub.Evaluate
                with pytest.raises(grpc.RpcError) as info:
                    call(request, timeout=30)
                assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, name  # type: ignore[attr-defined]
    server.healthy()
    limit_lines = [line for line in server.log if '"event":"limit"' in line]
    assert 1 <= len(limit_lines) <= len(requests)  # one per limit, not one per call


def _evaluate(context: dict[str, Any]) -> pb.EvaluateRequest:
    request = pb.EvaluateRequest(flag_key="gate")
    request.context.update(context)
    return request


# -- streams ----------------------------------------------------------------------------------


def test_thousands_of_streams_are_bounded_and_unary_calls_go_on(
    served: tuple[Served, Path],
) -> None:
    server, _ = served

    async def storm() -> tuple[int, int]:
        # Twelve connections (a local subchannel pool: by default channels share one).
        channels = [
            grpc.aio.insecure_channel(
                f"127.0.0.1:{server.port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(12)
        ]
        calls = [
            v2_grpc.ServiceStub(channels[i % len(channels)]).EventStream(v2.EventStreamRequest())
            for i in range(1_000)
        ]

        async def first(call: Any) -> bool:
            try:
                return bool((await call.read()).type == "provider_ready")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                return False

        results = await asyncio.gather(*(first(c) for c in calls))
        # While every admitted stream is open: unary calls are answered.
        unary = v2_grpc.ServiceStub(channels[0])
        reply = await unary.ResolveBoolean(v2.ResolveBooleanRequest(flag_key="gate"), timeout=20)
        assert reply.value is True
        assert rss_kb(server.pid) < 2 * server.baseline + 100 * 1024
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close(None)
        return sum(results), len(results) - sum(results)

    admitted, refused = asyncio.run(storm())
    assert admitted == MAX_STREAMS and refused == 1_000 - MAX_STREAMS
    server.healthy()


def test_slow_readers_of_event_streams_cost_bounded_memory(served: tuple[Served, Path]) -> None:
    server, path = served

    async def never_read() -> None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        calls = [pb_grpc.EvaluationStub(channel).Watch(pb.WatchRequest()) for _ in range(100)] + [
            v2_grpc.ServiceStub(channel).EventStream(v2.EventStreamRequest()) for _ in range(100)
        ]
        await asyncio.sleep(1)
        for round_ in range(15):  # every change fans out to 200 streams nobody reads
            path.write_text(json.dumps(flags_document(50 + round_ * 20)))
            await asyncio.sleep(0.25)
        assert rss_kb(server.pid) < 2 * server.baseline + 100 * 1024
        for call in calls:
            call.cancel()
        await channel.close(None)

    asyncio.run(never_read())
    path.write_text(json.dumps(flags_document(50)))
    server.healthy()


# -- hostile definitions ----------------------------------------------------------------------


def hostile_documents() -> dict[str, str]:
    evaluator = {"or": [{"==": [{"var": "x"}, i]} for i in range(400)]}
    refs = {
        "$evaluators": {"big": evaluator},
        "flags": {
            "gate": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"},
            "f": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {"if": [{"or": [{"$ref": "big"}] * 200}, "on", "off"]},
            },
        },
    }
    wide = {
        "flags": {
            "gate": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"},
            "f": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {"or": [{"==": [{"var": "x"}, i]} for i in range(50_000)]},
            },
        }
    }
    # 800 JSON levels: within what JSON parsers take, past the rule depth limit.
    nested = '{"!": [' * 400 + "true" + "]}" * 400
    return {
        "refs": json.dumps(refs),
        "wide": json.dumps(wide),
        "huge": json.dumps(flags_document(30_000)),  # over --max-definitions-bytes
        "deep": '{"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "targeting": '
        + "[" * 100_000
        + "]" * 100_000
        + "}}}",
        "garbage": "{ not json at all",
        "nested": '{"flags": {"gate": {"state": "ENABLED", "variants": {"on": true}, '
        '"defaultVariant": "on"}, "f": {"state": "ENABLED", "variants": {"on": true}, '
        '"defaultVariant": "on", "targeting": ' + nested + "}}}",
    }


def test_hostile_definitions_through_the_file_source(served: tuple[Served, Path]) -> None:
    server, path = served
    good = path.read_text()
    for name, text in hostile_documents().items():
        mark = len(server.log)
        path.write_text(text)
        wait_until(
            f"the server to load or refuse {name}",
            lambda mark=mark: any(
                '"event":"reject"' in line or '"event":"apply"' in line
                for line in server.log[mark:]
            ),
            60,
        )
        server.healthy()
    path.write_text(good)
    server.healthy()


def test_hostile_yaml_through_the_file_source(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(
        "flags:\n  gate: {state: ENABLED, variants: {'on': true}, defaultVariant: 'on'}\n"
    )
    server = Served(f"--flags={path}", "--poll-interval=0.1")
    try:
        server.warm()
        bomb = "\n".join(
            ['a: &a ["x","x","x","x","x","x","x","x","x"]']
            + [
                f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]"
                for p, n in zip("abcdefgh", "bcdefghi", strict=True)
            ]
            + [
                "flags: {gate: {state: ENABLED, variants: {'on': true}, defaultVariant: 'on'}}",
                "z: *i",
            ]
        )
        hostile = {
            "bomb": bomb,
            "loop": "a: &a [1, *a]\nflags: {}\n",
            "surrogate": 'flags:\n  "g\\ud800": {state: ENABLED, variants: {"on": true}}\n',
            "deep": "flags: " + "[" * 50_000 + "]" * 50_000 + "\n",
        }
        for name, text in hostile.items():
            mark = len(server.log)
            path.write_text(text)
            wait_until(
                f"the server to refuse {name}",
                lambda mark=mark: any('"event":"reject"' in line for line in server.log[mark:]),
                60,
            )
            server.healthy()
    finally:
        server.stop()
    log = "".join(server.log)
    assert "Traceback" not in log, log[
        max(0, log.index("Traceback") - 500) : log.index("Traceback") + 3000
    ]


def test_hostile_definitions_and_messages_through_redis(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    env = "abuse"
    keys = Keys(env)
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flags_document(20)))
    assert flagctl("push", str(path), "--redis", redis_server.url, "--env", env)[0] == 0
    edge = Edge(
        redis_server.url, env, tmp_path / "lkg.json", "--max-definitions-bytes=2000000"
    ).wait_serving()
    r = redis_server.client()
    try:
        baseline = _warm_edge(edge)
        for name, text in hostile_documents().items():
            mark = edge.mark()
            r.set(keys.definitions, text)
            version = r.incr(keys.version)
            r.publish(keys.channel, json.dumps({"version": version, "kind": "definitions"}))
            edge.wait_log(r'"event":"(reject|apply)"', since=mark, timeout=60)
            assert edge.value("gate") is True, name
            assert rss_kb(edge.process.pid) < 2 * baseline + 100 * 1024, name
        mark = edge.mark()
        pipe = r.pipeline(transaction=False)
        for i in range(3_000):
            pipe.publish(keys.channel, os.urandom(64) if i % 2 else b'{"version": 99999999999}')
        pipe.execute()
        r.delete(keys.definitions)
        r.hset(keys.definitions, "wrong", "type")
        r.incr(keys.version)
        wait_until("the edge to report the corrupt key", lambda: edge.readyz()["error"], 30)
        assert edge.readyz()["connected"] is True and edge.value("gate") is True
        assert rss_kb(edge.process.pid) < 2 * baseline + 100 * 1024
        assert sum('"event":"unreadable"' in line for line in edge.log[mark:]) <= 2
    finally:
        edge.stop()
        redis_server.kill()
    assert "Traceback" not in edge.text()


def _warm_edge(edge: Edge) -> int:
    for _ in range(200):
        edge.value("gate")
    time.sleep(0.5)
    return rss_kb(edge.process.pid)
