"""Bad input gets INVALID_ARGUMENT with a message that says what was wrong, and the server
keeps serving the next call."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge._proto.flagedge.v1 import flagedge_pb2_grpc as pb_grpc
from flagedge.server import Limits
from tests.support.server import async_test, serving

LIMITS = Limits(
    max_message_bytes=20_000, max_batch_cells=10, max_context_depth=4, max_context_bytes=1_000
)


def nested(depth: int) -> dict[str, Any]:
    context: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        context = {"child": context}
    return context


async def still_serving(channel: grpc.aio.Channel) -> None:
    reply = await v2_grpc.ServiceStub(channel).ResolveBoolean(
        v2.ResolveBooleanRequest(flag_key="static-bool")
    )
    assert reply.value is True


async def refused(call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    return str(info.value.details())


def v2_request(context: dict[str, Any]) -> v2.ResolveBooleanRequest:
    request = v2.ResolveBooleanRequest(flag_key="static-bool")
    request.context.update(context)
    return request


def native_request(context: dict[str, Any]) -> pb.EvaluateRequest:
    request = pb.EvaluateRequest(flag_key="static-bool")
    request.context.update(context)
    return request


@async_test
async def test_an_oversized_context_is_refused_on_both_apis() -> None:
    big = {"blob": "x" * 2_000}
    async with serving(limits=LIMITS) as (_, channel):
        flagd = await refused(v2_grpc.ServiceStub(channel).ResolveBoolean(v2_request(big)))
        native = await refused(pb_grpc.EvaluationStub(channel).Evaluate(native_request(big)))
        await still_serving(channel)
    assert "over the limit of 1000 bytes" in flagd
    assert "context is" in native


@async_test
async def test_a_context_nested_too_deep_is_refused() -> None:
    async with serving(limits=LIMITS) as (_, channel):
        ok = await v2_grpc.ServiceStub(channel).ResolveBoolean(v2_request(nested(4)))
        message = await refused(v2_grpc.ServiceStub(channel).ResolveBoolean(v2_request(nested(5))))
        await still_serving(channel)
    assert ok.value is True
    assert "deeper than the limit of 4" in message


@async_test
async def test_a_batch_over_the_cell_limit_is_refused() -> None:
    request = pb.EvaluateBatchRequest(flag_keys=["static-bool", "int-flag", "float-flag"])
    for _ in range(4):
        request.contexts.add()
    async with serving(limits=LIMITS) as (_, channel):
        message = await refused(pb_grpc.EvaluationStub(channel).EvaluateBatch(request))
        await still_serving(channel)
    assert message == "batch of 3 flags x 4 contexts is 12 cells, over the limit of 10"


@async_test
async def test_a_message_over_the_size_limit_is_refused() -> None:
    request = pb.EvaluateBatchRequest(flag_keys=["static-bool"])
    for i in range(25):
        request.contexts.add().update({"pad": "y" * 900, "i": i})
    assert request.ByteSize() > LIMITS.max_message_bytes
    async with serving(limits=LIMITS) as (_, channel):
        message = await refused(pb_grpc.EvaluationStub(channel).EvaluateBatch(request))
        await still_serving(channel)
    assert "over the limit of 20000 bytes" in message


@pytest.mark.parametrize(
    "method",
    [
        "/flagd.evaluation.v2.Service/ResolveBoolean",
        "/flagd.evaluation.v1.Service/ResolveAll",
        "/flagedge.v1.Evaluation/Evaluate",
        "/flagedge.v1.Evaluation/EvaluateBatch",
    ],
)
@async_test
async def test_garbage_bytes_are_refused(method: str) -> None:
    async with serving() as (_, channel):
        raw = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x03\xff\x00\x01"):
            message = await refused(raw(garbage))
            assert "is not a valid" in message
        await still_serving(channel)


@async_test
async def test_a_bad_message_ends_a_stream_with_invalid_argument() -> None:
    async with serving(limits=LIMITS) as (_, channel):
        raw = channel.stream_stream(
            "/flagedge.v1.Evaluation/EvaluateStream",
            request_serializer=lambda b: b,
            response_deserializer=pb.EvaluateBatchResponse.FromString,
        )
        good = pb.EvaluateBatchRequest(flag_keys=["static-bool"], request_id=1)
        good.contexts.add()
        call = raw(iter([good.SerializeToString(), b"\xff\xff"]))
        first = await call.read()
        assert first.request_id == 1
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        await still_serving(channel)
