"""flagd's sync service (flagd.sync.v1.FlagSyncService) on a real grpc.aio server on port 0,
driven by real gRPC clients: the configuration at once and after every change, on every open
stream; newest state wins for a slow reader; selectors; FetchAllFlags and GetMetadata; health
and reflection; the stream deadline; shutdown; thousands of idle streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flagedge._proto.flagd.sync.v1 import sync_pb2, sync_pb2_grpc
from flagedge.model import Override, OverrideKind
from flagedge.server.rpc import RunningSyncServer, start_sync_server
from flagedge.snapshot import SnapshotHolder
from tests.support.documents import DOCUMENT, build
from tests.support.server import async_test

SOURCE = "flags.json"


@contextlib.asynccontextmanager
async def sync_serving(
    holder: SnapshotHolder | None = None, *, stream_deadline: float = 0.0
) -> AsyncIterator[tuple[RunningSyncServer, SnapshotHolder, sync_pb2_grpc.FlagSyncServiceStub]]:
    holder = holder or SnapshotHolder(build())
    server = await start_sync_server(
        holder, "127.0.0.1", 0, source=SOURCE, stream_deadline=stream_deadline
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, holder, sync_pb2_grpc.FlagSyncServiceStub(channel)
    finally:
        await channel.close(None)
        await server.stop(1)


def flags_of(message: sync_pb2.SyncFlagsResponse | sync_pb2.FetchAllFlagsResponse) -> Any:
    return json.loads(message.flag_configuration)["flags"]


def kill(holder: SnapshotHolder, key: str, variant: str | None = None) -> None:
    snap = holder.current
    assert snap is not None
    holder.install(
        snap.with_overrides({key: Override(OverrideKind.KILL, variant)}, snap.version + 1)
    )


async def read(stream: Any, timeout: float = 5.0) -> sync_pb2.SyncFlagsResponse:
    message: sync_pb2.SyncFlagsResponse = await asyncio.wait_for(stream.read(), timeout)
    assert message is not grpc.aio.EOF
    return message


@contextlib.asynccontextmanager
async def reading(stream: Any) -> AsyncIterator[asyncio.Queue[sync_pb2.SyncFlagsResponse]]:
    """Every message of ``stream``, as it arrives, in a queue (a timed-out read would
    cancel the call itself, so "nothing arrives" is checked on the queue)."""
    queue: asyncio.Queue[sync_pb2.SyncFlagsResponse] = asyncio.Queue()

    async def pump() -> None:
        while (message := await stream.read()) is not grpc.aio.EOF:
            queue.put_nowait(message)

    task = asyncio.create_task(pump())
    try:
        yield queue
    finally:
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await task


async def nothing_arrives(queue: asyncio.Queue[Any], within: float = 0.3) -> bool:
    await asyncio.sleep(within)
    return queue.empty()


@async_test
async def test_sync_flags_sends_the_whole_configuration_at_once_with_a_sync_context() -> None:
    async with sync_serving() as (_, _, stub):
        stream = stub.SyncFlags(sync_pb2.SyncFlagsRequest(provider_id="p1"))
        first = await read(stream)
        assert set(json.loads(first.flag_configuration)) == {"flags"}
        assert set(flags_of(first)) == set(DOCUMENT["flags"])
        assert first.HasField("sync_context") and dict(first.sync_context) == {}
        assert flags_of(first)["static-bool"]["source"] == SOURCE
        stream.cancel()


@async_test
async def test_every_change_reaches_every_open_stream() -> None:
    async with sync_serving() as (_, holder, stub):
        streams = [stub.SyncFlags(sync_pb2.SyncFlagsRequest()) for _ in range(20)]
        for stream in streams:
            assert flags_of(await read(stream))["static-bool"]["defaultVariant"] == "on"
        kill(holder, "static-bool", "off")
        for stream in streams:
            assert flags_of(await read(stream))["static-bool"]["defaultVariant"] == "off"
        kill(holder, "targeted-string")
        for stream in streams:
            assert flags_of(await read(stream))["targeted-string"]["state"] == "DISABLED"
            stream.cancel()


@async_test
async def test_a_slow_reader_skips_to_the_newest_state_and_holds_no_backlog() -> None:
    doc = json.loads(json.dumps(DOCUMENT))
    doc["flags"]["large"] = {
        "state": "ENABLED",
        "variants": {"text": "x" * 200_000},
        "defaultVariant": "text",
    }
    async with sync_serving(SnapshotHolder(build(doc))) as (server, holder, stub):
        slow = stub.SyncFlags(sync_pb2.SyncFlagsRequest())
        await read(slow)
        # 150 changes of 200 kB each while it reads nothing, the server free to send.
        for i in range(150):
            doc["flags"]["float-flag"]["variants"]["half"] = i
            holder.install(build(doc, version=2 + i))
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        async with reading(slow) as queue:
            received = []
            while not received or received[-1] != 149:
                message = await asyncio.wait_for(queue.get(), 5)
                received.append(flags_of(message)["float-flag"]["variants"]["half"])
            assert await nothing_arrives(queue)  # nothing queued behind the newest
        # What flow control let through before the reader stalled (about 5 MB here), then
        # the newest: never the 150 states one by one.
        assert len(received) < 75, received
        assert received == sorted(received)
        assert server.hub.streams <= 1


@async_test
async def test_a_change_outside_the_selection_sends_nothing() -> None:
    async with sync_serving() as (_, holder, stub):
        stream = stub.SyncFlags(
            sync_pb2.SyncFlagsRequest(), metadata=(("flagd-selector", "flagSetId=other"),)
        )
        async with reading(stream) as received:
            first = await asyncio.wait_for(received.get(), 5)
            assert list(flags_of(first)) == ["other-set"]
            kill(holder, "static-bool")
            assert await nothing_arrives(received)
            kill(holder, "other-set")
            changed = await asyncio.wait_for(received.get(), 5)
            assert flags_of(changed)["other-set"]["state"] == "DISABLED"


@async_test
async def test_the_selector_header_wins_over_the_request_field() -> None:
    async with sync_serving() as (_, _, stub):
        by_body = stub.SyncFlags(sync_pb2.SyncFlagsRequest(selector="flagSetId=other"))
        assert list(flags_of(await read(by_body))) == ["other-set"]
        both = stub.SyncFlags(
            sync_pb2.SyncFlagsRequest(selector="flagSetId=other"),
            metadata=(("flagd-selector", "flagSetId=shop"),),
        )
        assert "other-set" not in flags_of(await read(both))
        by_source = stub.SyncFlags(sync_pb2.SyncFlagsRequest(selector="source=elsewhere"))
        assert flags_of(await read(by_source)) == {}
        for stream in (by_body, both, by_source):
            stream.cancel()
        fetched = await stub.FetchAllFlags(
            sync_pb2.FetchAllFlagsRequest(), metadata=(("flagd-selector", "flagSetId=other"),)
        )
        assert list(flags_of(fetched)) == ["other-set"]


@async_test
async def test_an_invalid_selector_is_invalid_argument_and_the_server_keeps_serving() -> None:
    async with sync_serving() as (_, _, stub):
        stream = stub.SyncFlags(sync_pb2.SyncFlagsRequest(selector="color=blue"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stream.read()
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub.FetchAllFlags(
                sync_pb2.FetchAllFlagsRequest(), metadata=(("flagd-selector", "source="),)
            )
        assert again.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        fetched = await stub.FetchAllFlags(sync_pb2.FetchAllFlagsRequest())
        assert set(flags_of(fetched)) == set(DOCUMENT["flags"])


@async_test
async def test_a_garbled_request_is_invalid_argument() -> None:
    async with (
        sync_serving() as (server, _, _),
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        call = channel.unary_unary("/flagd.sync.v1.FlagSyncService/FetchAllFlags")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(b"\xff\xff\xff")
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@async_test
async def test_fetch_all_flags_answers_what_sync_flags_sends() -> None:
    async with sync_serving() as (_, holder, stub):
        kill(holder, "static-bool", "off")
        stream = stub.SyncFlags(sync_pb2.SyncFlagsRequest())
        sent = await read(stream)
        fetched = await stub.FetchAllFlags(sync_pb2.FetchAllFlagsRequest(provider_id="p"))
        assert fetched.flag_configuration == sent.flag_configuration
        assert flags_of(fetched)["static-bool"]["defaultVariant"] == "off"
        stream.cancel()


@async_test
async def test_get_metadata_answers_an_empty_struct_for_the_python_provider() -> None:
    async with sync_serving() as (_, _, stub):
        answer = await stub.GetMetadata(sync_pb2.GetMetadataRequest())
        assert answer.HasField("metadata") and dict(answer.metadata) == {}


@async_test
async def test_health_and_reflection_name_the_sync_service() -> None:
    async with (
        sync_serving() as (server, _, _),
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "flagd.sync.v1.FlagSyncService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflect.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = await call.read()
        names = {s.name for s in listed.list_services_response.service}
        assert "flagd.sync.v1.FlagSyncService" in names
        await call.done_writing()


@async_test
async def test_a_server_side_deadline_ends_the_stream_as_flagd_does() -> None:
    async with sync_serving(stream_deadline=0.3) as (_, _, stub):
        stream = stub.SyncFlags(sync_pb2.SyncFlagsRequest())
        await read(stream)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await read(stream)
        assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert ended.value.details() == "stream closed due to server-side timeout"
        again = stub.SyncFlags(sync_pb2.SyncFlagsRequest())
        await read(again)
        again.cancel()


@async_test
async def test_stopping_the_server_ends_open_streams_without_waiting_out_the_grace() -> None:
    holder = SnapshotHolder(build())
    server = await start_sync_server(holder, "127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stream = sync_pb2_grpc.FlagSyncServiceStub(channel).SyncFlags(sync_pb2.SyncFlagsRequest())
        await read(stream)
        started = time.monotonic()
        await server.stop(10)
        assert time.monotonic() - started < 5
        assert await stream.read() is grpc.aio.EOF
        assert await stream.code() is grpc.StatusCode.OK


@async_test
async def test_thousands_of_idle_streams_leave_the_listener_answering_others() -> None:
    async with sync_serving() as (server, holder, stub):
        target = f"127.0.0.1:{server.port}"
        # Four connections (channels to one target share one unless told not to), each
        # under the listener's limit of streams per connection.
        channels = [
            grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(4)
        ]
        try:
            # All at once, as providers reconnecting after an edge restart would.
            idle = [
                sync_pb2_grpc.FlagSyncServiceStub(channels[i % len(channels)]).SyncFlags(
                    sync_pb2.SyncFlagsRequest()
                )
                for i in range(2000)
            ]
            firsts = await asyncio.wait_for(asyncio.gather(*(s.read() for s in idle)), 60)
            assert all(set(flags_of(m)) == set(DOCUMENT["flags"]) for m in firsts)
            deadline = time.monotonic() + 30
            while server.hub.streams < len(idle) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert server.hub.streams == len(idle)
            # Another client is answered at once, and hears a change, while all stay open.
            fetched = await stub.FetchAllFlags(sync_pb2.FetchAllFlagsRequest(), timeout=5)
            assert set(flags_of(fetched)) == set(DOCUMENT["flags"])
            watcher = stub.SyncFlags(sync_pb2.SyncFlagsRequest())
            await read(watcher)
            kill(holder, "static-bool", "off")
            assert flags_of(await read(watcher, 10))["static-bool"]["defaultVariant"] == "off"
            watcher.cancel()
        finally:
            for channel in channels:
                await channel.close(None)
        deadline = time.monotonic() + 10
        while server.hub.streams and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.hub.streams == 0  # every cancelled stream let go of its slot
