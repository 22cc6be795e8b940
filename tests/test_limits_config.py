"""The limits: each is a setting (config.LIMITS, config.DEFINITION_LIMITS) that reaches the
server through ServeConfig and wire.Limits, is answered with the right status, and is logged
once (not once per call). Connection limits are grpc's own, checked on the wire with raw
HTTP/2 frames: a client that pings too often and a connection left idle are closed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import struct
from typing import Any

import grpc
import pytest

from flagedge import config
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge._proto.flagedge.v1 import flagedge_pb2_grpc as pb_grpc
from flagedge.definitions import DefinitionLimits
from flagedge.serve.config import ServeConfig
from flagedge.server import Limits
from tests.support.server import async_test, serving

LIMITS_FLAGS = [
    "--max-message-bytes=5000",
    "--max-context-bytes=4000",
    "--max-context-depth=9",
    "--max-context-keys=7",
    "--max-batch-cells=99",
    "--max-streams=12",
    "--max-streams-per-connection=13",
    "--max-connection-idle=14",
    "--keepalive-time=15",
    "--min-ping-interval=16",
    "--max-ping-strikes=0",
    "--max-definitions-bytes=17000",
    "--max-rule-depth=18",
    "--max-rule-width=19",
    "--max-rule-nodes=20",
    "--max-rule-cost=21",
]


def serve_settings(argv: list[str], env: dict[str, str]) -> ServeConfig:
    from flagedge.cli.serve import GROUPS

    parser = argparse.ArgumentParser()
    config.add_options(parser, GROUPS)
    return ServeConfig.from_settings(config.resolve(parser.parse_args(argv), GROUPS, env))


def test_every_limit_is_a_setting_that_reaches_serve_config_and_its_workers() -> None:
    serve = serve_settings(LIMITS_FLAGS, {"FLAGEDGE_MAX_KEYS": "11"})
    assert serve.limits == Limits(
        max_message_bytes=5000,
        max_batch_cells=99,
        max_context_depth=9,
        max_context_bytes=4000,
        max_context_keys=7,
        max_keys=11,
        max_streams=12,
        max_streams_per_connection=13,
        max_connection_idle=14.0,
        keepalive_time=15.0,
        min_ping_interval=16.0,
        max_ping_strikes=0,
    )
    assert serve.definition_limits == DefinitionLimits(17000, 18, 19, 20, 21)
    # A worker gets the same limits (its configuration travels as JSON).
    assert ServeConfig.from_json(serve.to_json()) == serve


def test_the_defaults_are_the_wire_and_definition_defaults() -> None:
    serve = serve_settings([], {})
    assert serve.limits == Limits() and serve.definition_limits == DefinitionLimits()


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--max-context-keys", "0"), ("--max-rule-depth", "100000"), ("--max-ping-strikes", "-1")],
)
def test_a_limit_that_makes_no_sense_is_refused(flag: str, value: str) -> None:
    with pytest.raises(SystemExit):
        serve_settings([flag, value], {})


def test_the_limits_are_in_the_readme_table() -> None:
    table = config.options_table()
    assert "| **Limits** | | | *serve* |" in table
    assert "| `--max-streams` | `FLAGEDGE_MAX_STREAMS` | 10000 |" in table
    assert "| **Definition limits** |" in table


# -- request limits, on a real server ---------------------------------------------------------


def refused_code(info: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> grpc.StatusCode:
    return info.value.code()


def with_keys(count: int, nested: bool = False) -> v2.ResolveBooleanRequest:
    request = v2.ResolveBooleanRequest(flag_key="static-bool")
    context: dict[str, Any] = {f"key{i}": i for i in range(count)}
    if nested:
        context = {"a": {"b": context}}
    request.context.update(context)
    return request


@async_test
async def test_a_context_with_too_many_keys_is_refused_counting_every_level() -> None:
    async with serving(limits=Limits(max_context_keys=10)) as (_, channel):
        stub = v2_grpc.ServiceStub(channel)
        assert (await stub.ResolveBoolean(with_keys(10))).value is True
        for request in (with_keys(11), with_keys(9, nested=True)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ResolveBoolean(request)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "more than 10 keys" in str(info.value.details())
        assert (await stub.ResolveBoolean(with_keys(3))).value is True


@async_test
async def test_evaluate_all_evaluates_a_key_named_twice_once() -> None:
    async with serving() as (_, channel):
        keys = ["static-bool", "int-flag"] * 2_500
        reply = await pb_grpc.EvaluationStub(channel).EvaluateAll(pb.EvaluateAllRequest(keys=keys))
    assert [r.key for r in reply.results] == ["static-bool", "int-flag"]


@async_test
async def test_a_request_naming_more_keys_than_the_limit_is_refused() -> None:
    async with serving(limits=Limits(max_keys=100)) as (_, channel):
        stub = pb_grpc.EvaluationStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.EvaluateAll(pb.EvaluateAllRequest(keys=["static-bool"] * 101))
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "names 101 flag keys, over the limit of 100" in str(info.value.details())
        # A batch with no contexts has no cells, but its keys still count.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.EvaluateBatch(pb.EvaluateBatchRequest(flag_keys=["x"] * 101))
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        ok = await stub.EvaluateAll(pb.EvaluateAllRequest(keys=["static-bool"] * 100))
        assert len(ok.results) == 1


@async_test
async def test_evaluate_all_with_280000_duplicate_keys_is_refused_at_the_default_limit() -> None:
    request = pb.EvaluateAllRequest(keys=["static-bool"] * 280_000)  # 3.9 MB
    async with serving() as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.EvaluationStub(channel).EvaluateAll(request)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "over the limit of 10000" in str(info.value.details())


@async_test
async def test_streams_past_the_limit_are_refused_and_unary_calls_go_on() -> None:
    async with serving(limits=Limits(max_streams=3)) as (server, channel):
        stub = v2_grpc.ServiceStub(channel)
        calls = [stub.EventStream(v2.EventStreamRequest()) for _ in range(3)]
        for call in calls:
            assert (await call.read()).type == "provider_ready"
        extra = stub.EventStream(v2.EventStreamRequest())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await extra.read()
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        watch = pb_grpc.EvaluationStub(channel).Watch(pb.WatchRequest())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await watch.read()
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await stub.ResolveBoolean(v2.ResolveBooleanRequest(flag_key="static-bool"))).value
        calls[0].cancel()
        for _ in range(200):  # the server sees the cancellation shortly
            if server.guard.open < 3:
                break
            await asyncio.sleep(0.01)
        again = stub.EventStream(v2.EventStreamRequest())
        assert (await again.read()).type == "provider_ready"
        for call in (*calls, again):
            call.cancel()


@async_test
async def test_a_limit_is_logged_once_however_often_it_is_hit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flagedge.server")
    async with serving(limits=Limits(max_context_bytes=100)) as (_, channel):
        stub = v2_grpc.ServiceStub(channel)
        for _ in range(50):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.ResolveBoolean(with_keys(40))
    lines = [r for r in caplog.records if getattr(r, "event", "") == "limit"]
    assert len(lines) == 1
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["limit"] == "max-context-bytes"
    assert fields["method"] == "flagd.evaluation.v2.Service/ResolveBoolean"
    assert fields["status"] == "INVALID_ARGUMENT"


@async_test
async def test_calls_past_the_per_connection_limit_wait_for_a_free_stream() -> None:
    async with serving(limits=Limits(max_streams_per_connection=2)) as (server, channel):
        stub = pb_grpc.EvaluationStub(channel)
        watches = [stub.Watch(pb.WatchRequest()) for _ in range(4)]
        first = {asyncio.ensure_future(w.read()): w for w in watches}
        done, pending = await asyncio.wait(first, timeout=2)
        assert len(done) == 2 and len(pending) == 2  # two streams on this connection, no more
        assert server.guard.open == 2
        first[next(iter(done))].cancel()
        freed, _ = await asyncio.wait(pending, timeout=10)
        assert len(freed) == 1  # one waiting call got the stream that was let go
        for w in watches:
            w.cancel()
        for f in first:
            f.cancel()


# -- connection limits, on the wire -----------------------------------------------------------

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SETTINGS, _PING, _GOAWAY = 0x4, 0x6, 0x7
_ENHANCE_YOUR_CALM = 0xB


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


async def h2_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_PREFACE + frame(_SETTINGS, 0, 0))
    await writer.drain()
    return reader, writer


async def goaway(
    reader: asyncio.StreamReader, timeout: float, *, until_ack: bool = False
) -> tuple[int, bytes] | None:
    """The error code and debug text of the GOAWAY the server sends (frames before it are
    skipped); with ``until_ack``, None when a PING acknowledgement comes first. Fails if the
    connection ends or the time passes."""
    async with asyncio.timeout(timeout):
        while True:
            head = await reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            payload = await reader.readexactly(length)
            if head[3] == _GOAWAY:
                return int.from_bytes(payload[4:8], "big"), payload[8:]
            if until_ack and head[3] == _PING and head[4] & 1:
                return None


@async_test
async def test_a_client_that_pings_too_often_is_sent_away() -> None:
    limits = Limits(min_ping_interval=10.0, max_ping_strikes=2)
    async with serving(limits=limits) as (server, _channel):
        reader, writer = await h2_open(server.port)
        answer = None
        for i in range(6):  # one at a time: the server reads each before it answers
            writer.write(frame(_PING, 0, 0, struct.pack(">Q", i)))
            await writer.drain()
            answer = await goaway(reader, 10, until_ack=True)
            if answer is not None:
                break
        writer.close()
    assert answer is not None, "no GOAWAY after six pings in a row"
    code, debug = answer
    assert code == _ENHANCE_YOUR_CALM and b"too_many_pings" in debug


@async_test
async def test_an_idle_connection_is_closed_after_the_idle_limit() -> None:
    async with serving(limits=Limits(max_connection_idle=0.5)) as (server, _channel):
        reader, writer = await h2_open(server.port)
        answer = await goaway(reader, 20)
        writer.close()
    assert answer is not None
    _code, debug = answer
    assert debug == b"connection idle"  # clients reconnect when they next need it
