"""flagd's evaluation protocol, v2 and v1, against a real server on port 0.

Each case is a row of flagd-compat.md section 1.6 and states what goes on the wire.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2_grpc as v1_grpc
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc
from flagedge.snapshot import SnapshotHolder
from tests.support.documents import DOCUMENT, build
from tests.support.server import async_test, serving

VERSIONS = {"v1": (v1, v1_grpc), "v2": (v2, v2_grpc)}


async def resolve(
    channel: grpc.aio.Channel,
    version: str,
    kind: str,
    key: str,
    context: dict[str, Any] | None = None,
    selector: str | None = None,
) -> Any:
    module, stubs = VERSIONS[version]
    request = getattr(module, f"Resolve{kind}Request")(flag_key=key)
    if context:
        request.context.update(context)
    metadata = (("flagd-selector", selector),) if selector is not None else None
    return await getattr(stubs.ServiceStub(channel), f"Resolve{kind}")(request, metadata=metadata)


async def failure(coro: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value.code(), info.value.details()


@pytest.mark.parametrize("version", ["v1", "v2"])
class TestResultTable:
    @async_test
    async def test_a_flag_without_targeting_is_static(self, version: str) -> None:
        async with serving() as (_, channel):
            reply = await resolve(channel, version, "Boolean", "static-bool")
        assert (reply.value, reply.variant, reply.reason) == (True, "on", "STATIC")
        assert MessageToDict(reply.metadata) == {
            "flagSetId": "shop",
            "version": "7",
            "owner": "checkout",
        }

    @async_test
    async def test_a_targeting_match_returns_its_variant(self, version: str) -> None:
        async with serving() as (_, channel):
            reply = await resolve(
                channel, version, "String", "targeted-string", {"email": "a@example.com"}
            )
        assert (reply.value, reply.variant, reply.reason) == ("#00f", "blue", "TARGETING_MATCH")

    @async_test
    async def test_boolean_targeting_results_name_the_true_and_false_variants(
        self, version: str
    ) -> None:
        async with serving() as (_, channel):
            reply = await resolve(channel, version, "Boolean", "shorthand-bool", {"tier": "gold"})
        assert (reply.value, reply.variant, reply.reason) == (True, "true", "TARGETING_MATCH")

    @async_test
    async def test_targeting_null_falls_back_to_the_default_variant(self, version: str) -> None:
        async with serving() as (_, channel):
            reply = await resolve(channel, version, "String", "targeted-string", {"email": "x@y"})
        assert (reply.value, reply.variant, reply.reason) == ("#f00", "red", "DEFAULT")

    @pytest.mark.parametrize("key", ["no-default", "null-default"])
    @async_test
    async def test_no_default_variant_is_reason_only_on_v2_and_not_found_on_v1(
        self, version: str, key: str
    ) -> None:
        async with serving() as (_, channel):
            if version == "v2":
                reply = await resolve(channel, version, "String", key)
                assert not reply.HasField("value")
                assert not reply.HasField("variant")
                assert reply.reason == "DEFAULT"
            else:
                code = await failure(resolve(channel, version, "String", key))
                assert code == (grpc.StatusCode.NOT_FOUND, "Flag not found")

    @async_test
    async def test_a_disabled_flag_succeeds_with_reason_disabled(self, version: str) -> None:
        async with serving() as (_, channel):
            reply = await resolve(channel, version, "Boolean", "disabled-flag")
        assert reply.reason == "DISABLED"
        assert MessageToDict(reply.metadata)["owner"] == "ops"
        if version == "v2":
            assert not reply.HasField("value")
            assert not reply.HasField("variant")
        else:
            assert (reply.value, reply.variant) == (False, "")

    @async_test
    async def test_an_unknown_flag_is_not_found(self, version: str) -> None:
        async with serving() as (_, channel):
            code = await failure(resolve(channel, version, "Boolean", "nope"))
        assert code == (grpc.StatusCode.NOT_FOUND, "Flag not found")

    @async_test
    async def test_asking_for_the_wrong_type_is_a_type_mismatch(self, version: str) -> None:
        async with serving() as (_, channel):
            code = await failure(resolve(channel, version, "Boolean", "targeted-string"))
        assert code == (grpc.StatusCode.INVALID_ARGUMENT, "Type mismatch error")

    @async_test
    async def test_a_bad_rule_is_a_parse_error(self, version: str) -> None:
        async with serving() as (_, channel):
            code = await failure(resolve(channel, version, "Boolean", "bad-rule"))
        assert code == (grpc.StatusCode.DATA_LOSS, "Error parsing input or configuration")

    @async_test
    async def test_targeting_naming_no_variant_is_a_general_error(self, version: str) -> None:
        async with serving() as (_, channel):
            code = await failure(resolve(channel, version, "Boolean", "unknown-variant"))
        assert code == (grpc.StatusCode.UNKNOWN, "General error")

    @async_test
    async def test_an_invalid_selector_is_invalid_argument(self, version: str) -> None:
        async with serving() as (_, channel):
            code, _ = await failure(
                resolve(channel, version, "Boolean", "static-bool", selector="colour=red")
            )
        assert code is grpc.StatusCode.INVALID_ARGUMENT

    @async_test
    async def test_ints_truncate_floats_widen_and_objects_are_structs(self, version: str) -> None:
        async with serving() as (_, channel):
            pi = await resolve(channel, version, "Int", "int-flag", {"want": "pi"})
            one = await resolve(channel, version, "Float", "int-flag")
            obj = await resolve(channel, version, "Object", "object-flag")
        assert (pi.value, pi.variant) == (3, "pi")
        assert (one.value, one.variant) == (1.0, "one")
        assert MessageToDict(obj.value) == {"size": 3.0, "name": "A"}

    @async_test
    async def test_a_flag_set_selector_hides_other_sets_and_is_reflected(
        self, version: str
    ) -> None:
        async with serving() as (_, channel):
            code = await failure(
                resolve(channel, version, "Boolean", "static-bool", selector="flagSetId=other")
            )
            reply = await resolve(
                channel, version, "Boolean", "other-set", selector="flagSetId=other"
            )
            by_source = await resolve(
                channel, version, "Boolean", "static-bool", selector="flags.json"
            )
            wrong_source = await failure(
                resolve(channel, version, "Boolean", "static-bool", selector="source=elsewhere")
            )
        assert code == (grpc.StatusCode.NOT_FOUND, "Flag not found")
        assert reply.value is True
        assert MessageToDict(reply.metadata)["flagSetId"] == "other"
        assert MessageToDict(by_source.metadata)["source"] == "flags.json"
        assert wrong_source == (grpc.StatusCode.NOT_FOUND, "Flag not found")


class TestResolveAll:
    @async_test
    async def test_resolve_all_types_by_kind_and_skips_flags_without_a_default(self) -> None:
        async with serving() as (_, channel):
            reply = await v1_grpc.ServiceStub(channel).ResolveAll(v1.ResolveAllRequest())
        flags = reply.flags
        assert "no-default" not in flags and "null-default" not in flags
        assert flags["static-bool"].bool_value is True
        assert flags["int-flag"].WhichOneof("value") == "double_value"
        assert flags["int-flag"].double_value == 1.0
        assert MessageToDict(flags["object-flag"].object_value) == {"size": 3.0, "name": "A"}
        assert (flags["disabled-flag"].reason, flags["disabled-flag"].variant) == ("DISABLED", "")
        assert flags["disabled-flag"].bool_value is False
        assert (flags["bad-rule"].reason, flags["bad-rule"].bool_value) == ("ERROR", False)
        assert MessageToDict(flags["static-bool"].metadata)["owner"] == "checkout"

    @async_test
    async def test_resolve_all_honours_the_selector(self) -> None:
        async with serving() as (_, channel):
            reply = await v1_grpc.ServiceStub(channel).ResolveAll(
                v1.ResolveAllRequest(), metadata=(("flagd-selector", "flagSetId=other"),)
            )
        assert list(reply.flags) == ["other-set"]
        assert MessageToDict(reply.metadata) == {"flagSetId": "other"}


def changed_document() -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    flags = document["flags"]
    flags["static-bool"]["defaultVariant"] = "off"  # update
    del flags["float-flag"]  # delete
    flags["brand-new"] = {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a"}
    return document


async def connected(stream: Any) -> dict[str, Any]:
    """Read provider_ready and the flush that follows it; return the flushed flags."""
    first = await stream.read()
    assert (first.type, MessageToDict(first.data)) == ("provider_ready", {})
    flush = await stream.read()
    assert flush.type == "configuration_change"
    flags: dict[str, Any] = MessageToDict(flush.data)["flags"]
    return flags


@pytest.mark.parametrize("version", ["v1", "v2"])
class TestEventStream:
    @async_test
    async def test_every_flag_is_named_changed_right_after_ready(self, version: str) -> None:
        """A reconnecting provider may have cached answers a change made stale meanwhile."""
        module, stubs = VERSIONS[version]
        async with serving() as (_, channel):
            stream = stubs.ServiceStub(channel).EventStream(module.EventStreamRequest())
            flushed = await connected(stream)
            stream.cancel()
        assert flushed == {key: {"type": "update"} for key in DOCUMENT["flags"]}

    @async_test
    async def test_the_flush_names_only_flags_the_selector_admits(self, version: str) -> None:
        module, stubs = VERSIONS[version]
        async with serving() as (_, channel):
            stream = stubs.ServiceStub(channel).EventStream(
                module.EventStreamRequest(), metadata=(("flagd-selector", "flagSetId=other"),)
            )
            flushed = await connected(stream)
            stream.cancel()
        assert flushed == {"other-set": {"type": "update"}}

    @async_test
    async def test_ready_at_once_then_each_change_with_its_kind(self, version: str) -> None:
        module, stubs = VERSIONS[version]
        holder = SnapshotHolder(build())
        async with serving(holder) as (_, channel):
            stream = stubs.ServiceStub(channel).EventStream(module.EventStreamRequest())
            await connected(stream)
            holder.install(build(changed_document(), version=2))
            change = await stream.read()
            stream.cancel()
        assert change.type == "configuration_change"
        assert MessageToDict(change.data) == {
            "flags": {
                "static-bool": {"type": "update"},
                "float-flag": {"type": "delete"},
                "brand-new": {"type": "write"},
            }
        }

    @async_test
    async def test_keep_alive_is_sent_when_nothing_else_is(self, version: str) -> None:
        module, stubs = VERSIONS[version]
        async with serving(keepalive_interval=0.05) as (_, channel):
            stream = stubs.ServiceStub(channel).EventStream(module.EventStreamRequest())
            await connected(stream)
            assert (await stream.read()).type == "keep_alive"
            stream.cancel()

    @async_test
    async def test_a_server_side_deadline_ends_the_stream_as_flagd_does(self, version: str) -> None:
        module, stubs = VERSIONS[version]
        async with serving(keepalive_interval=0.1, stream_deadline=0.35) as (_, channel):
            stream = stubs.ServiceStub(channel).EventStream(module.EventStreamRequest())
            await connected(stream)
            kinds = []
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while True:
                    kinds.append((await stream.read()).type)
            # Keep-alives until the deadline (how many depends on the machine's pace).
            assert kinds and set(kinds) == {"keep_alive"}
            assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert ended.value.details() == "stream closed due to server-side timeout"
            # The server goes on serving: a new stream opens and gets ready.
            again = stubs.ServiceStub(channel).EventStream(module.EventStreamRequest())
            await connected(again)
            again.cancel()

    @async_test
    async def test_provider_shutdown_is_sent_when_the_server_stops(self, version: str) -> None:
        module, stubs = VERSIONS[version]
        async with serving() as (server, channel):
            stream = stubs.ServiceStub(channel).EventStream(module.EventStreamRequest())
            await connected(stream)
            stopping = asyncio.create_task(server.stop(5))
            last = await stream.read()
            await stopping
        assert last.type == "provider_shutdown"

    @async_test
    async def test_events_only_name_flags_the_selector_admits(self, version: str) -> None:
        module, stubs = VERSIONS[version]
        holder = SnapshotHolder(build())
        async with serving(holder) as (_, channel):
            stream = stubs.ServiceStub(channel).EventStream(
                module.EventStreamRequest(), metadata=(("flagd-selector", "flagSetId=other"),)
            )
            await connected(stream)
            first = copy.deepcopy(DOCUMENT)
            first["flags"]["static-bool"]["defaultVariant"] = "off"
            holder.install(build(first, version=2))
            second = copy.deepcopy(first)
            second["flags"]["other-set"]["defaultVariant"] = "off"
            holder.install(build(second, version=3))
            change = await stream.read()
            stream.cancel()
        assert MessageToDict(change.data) == {"flags": {"other-set": {"type": "update"}}}
