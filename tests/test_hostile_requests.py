"""Hostile requests and hostile values on the serving paths: megabyte keys cannot bloat
/metrics, a value the wire cannot carry fails only its own result (never EvaluateAll,
ResolveAll, EvaluateBatch, EventStream or /metrics for everyone), and HEAD has no body."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2_grpc as v1_grpc
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge._proto.flagedge.v1 import flagedge_pb2_grpc as pb_grpc
from flagedge.compiler import compile_flag
from flagedge.definitions import parse_document
from flagedge.metrics import MAX_UNKNOWN_KEYS
from flagedge.snapshot import Snapshot, SnapshotHolder
from tests.support.documents import DOCUMENT
from tests.support.server import async_test, serving


async def raw_http(port: int, request: bytes) -> bytes:
    """One request, the whole answer (the server closes after it); the server runs on this
    test's own event loop, so a blocking client would wait for ever."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(30):
        answer = await reader.read()
    writer.close()
    return answer


async def scrape(port: int) -> bytes:
    head, _, body = (await raw_http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).partition(
        b"\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.1 200 "), head
    return body


# -- megabyte keys and /metrics (finding 7) ----------------------------------------------------


@async_test
async def test_unknown_keys_of_a_megabyte_leave_metrics_small() -> None:
    async with serving(management=True) as (server, channel):
        stub = pb_grpc.EvaluationStub(channel)
        for i in range(MAX_UNKNOWN_KEYS + 10):
            key = f"{i:04d}" + "k" * 1_000_000
            reply = await stub.Evaluate(pb.EvaluateRequest(flag_key=key))
            assert reply.result.error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
        server.metrics.fold()
        body = await scrape(server.management_port)  # type: ignore[attr-defined]
    assert len(body) < 100_000  # was 379 MB after 101 such calls
    unknown = [
        line
        for line in body.decode().splitlines()
        if line.startswith("flagedge_evaluations_total") and 'reason="ERROR"' in line
    ]
    assert len(unknown) == MAX_UNKNOWN_KEYS + 1  # the first few, then one shared label
    assert any('flag="__other_unknown__"' in line for line in unknown)
    assert all(len(line) < 300 for line in unknown)


# -- a value the wire cannot carry (finding 6, the serving side) -------------------------------


def unsendable_snapshot() -> Snapshot:
    """A snapshot holding text with a lone surrogate, built from the core's parts: validation
    refuses such text (tests/test_hostile_definitions.py); a library caller could still
    build one, and serving must survive it."""
    doc: dict[str, Any] = {
        "flags": {
            **DOCUMENT["flags"],
            "bad\ud800key": {
                "state": "ENABLED",
                "variants": {"on": "x\udc00y", "off": "plain"},
                "defaultVariant": "on",
                "metadata": {"owner": "team\ud800"},
            },
            "bad-value": {
                "state": "ENABLED",
                "variants": {"on": "x\udc00y"},
                "defaultVariant": "on",
            },
        }
    }
    parsed = parse_document(doc)
    base = {d.key: compile_flag(d, parsed.scheme) for d in parsed.flags}
    return Snapshot(base, base, parsed, doc, {}, 1)


@async_test
async def test_one_unsendable_flag_does_not_fail_the_answers_around_it() -> None:
    holder = SnapshotHolder(unsendable_snapshot())
    async with serving(holder, management=True) as (server, channel):
        native = pb_grpc.EvaluationStub(channel)
        everything = await native.EvaluateAll(pb.EvaluateAllRequest())
        by_key = {r.key: r for r in everything.results}
        assert by_key["static-bool"].value.bool_value is True
        assert by_key["bad\ufffdkey"].value.string_value == "x\ufffdy"

        batch = pb.EvaluateBatchRequest()
        batch.contexts.add()
        answer = await native.EvaluateBatch(batch)
        assert len(answer.flags) == len(holder.current.keys)  # type: ignore[union-attr]

        v1_all = await v1_grpc.ServiceStub(channel).ResolveAll(v1.ResolveAllRequest())
        assert v1_all.flags["static-bool"].bool_value is True

        stub = v2_grpc.ServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ResolveString(v2.ResolveStringRequest(flag_key="bad-value"))
        assert info.value.code() is grpc.StatusCode.UNKNOWN  # flagd's GENERAL, not INTERNAL

        events = stub.EventStream(v2.EventStreamRequest())
        assert (await events.read()).type == "provider_ready"
        change = await events.read()
        assert change.type == "configuration_change"
        assert "bad\ufffdkey" in change.data.fields["flags"].struct_value.fields
        events.cancel()

        server.metrics.fold()
        for _ in range(2):  # /metrics keeps answering, scrape after scrape
            assert b"flagedge_evaluations_total" in await scrape(server.management_port)  # type: ignore[attr-defined]
        ok = await stub.ResolveBoolean(v2.ResolveBooleanRequest(flag_key="static-bool"))
        assert ok.value is True


# -- the management port (finding 14) ----------------------------------------------------------


@async_test
async def test_head_answers_the_headers_of_get_and_no_body() -> None:
    async with serving(management=True) as (server, _):
        port = server.management_port  # type: ignore[attr-defined]
        for path in (b"/healthz", b"/readyz", b"/metrics", b"/nowhere"):
            get = await raw_http(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await raw_http(port, b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            get_head, _, get_body = get.partition(b"\r\n\r\n")
            head_head, _, head_body = head.partition(b"\r\n\r\n")
            assert head_body == b"", path
            assert get_body, path
            assert head_head.split(b"\r\n")[0] == get_head.split(b"\r\n")[0]
            assert b"Content-Length: " in head_head
