"""The native flagedge.v1 API (flagedge.server.native) through flagedge.client, against real
servers on port 0: typed values, problems as data, batches, streams, Watch and deadlines."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import grpc

from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.client import AsyncClient, Client
from flagedge.model import ErrorCode, FlagType, Reason
from flagedge.server import Limits, status
from flagedge.server.events import ChangeHub
from flagedge.server.native import NativeServicer
from flagedge.snapshot import SnapshotHolder
from tests.support.documents import DOCUMENT, NOW, build
from tests.support.server import async_test, serving


def target(port: int) -> str:
    return f"127.0.0.1:{port}"


class TestEvaluate:
    @async_test
    async def test_evaluate_returns_typed_values_with_variant_and_reason(self) -> None:
        async with serving() as (server, _), AsyncClient(target(server.port)) as client:
            blue = await client.evaluate("targeted-string", {"email": "me@example.com"})
            obj = await client.evaluate("object-flag", flag_type=FlagType.OBJECT)
            pi = await client.evaluate("int-flag", {"want": "pi"}, flag_type=FlagType.INTEGER)
        assert (blue.value, blue.variant, blue.reason) == ("#00f", "blue", Reason.TARGETING_MATCH)
        assert obj.value == {"size": 3, "name": "A"}
        assert (pi.value, pi.variant) == (3, "pi")
        assert blue.metadata == {"flagSetId": "shop", "version": "7"}

    @async_test
    async def test_evaluation_problems_are_data_not_failed_calls(self) -> None:
        async with serving() as (server, _), AsyncClient(target(server.port)) as client:
            missing = await client.evaluate("nope")
            mismatch = await client.evaluate("static-bool", flag_type=FlagType.STRING)
            parse = await client.evaluate("bad-rule")
            disabled = await client.evaluate("disabled-flag")
            no_default = await client.evaluate("no-default")
        assert (missing.reason, missing.error_code) == (Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
        assert mismatch.error_code is ErrorCode.TYPE_MISMATCH
        assert parse.error_code is ErrorCode.PARSE_ERROR and parse.error_message
        assert (disabled.value, disabled.variant, disabled.reason) == (None, None, Reason.DISABLED)
        assert (no_default.value, no_default.reason) == (None, Reason.DEFAULT)

    @async_test
    async def test_context_values_keep_their_types(self) -> None:
        document: dict[str, Any] = {
            "flags": {
                "typed": {
                    "state": "ENABLED",
                    "variants": {"yes": True, "no": False},
                    "defaultVariant": "no",
                    "targeting": {
                        "if": [
                            {
                                "and": [
                                    {">": [{"var": "age"}, 17]},
                                    {"==": [{"var": "beta"}, True]},
                                    {"in": ["x", {"var": "tags"}]},
                                    {"==": [{"var": "org.plan"}, "pro"]},
                                ]
                            },
                            "yes",
                            None,
                        ]
                    },
                }
            }
        }
        context = {"age": 30, "beta": True, "tags": ["w", "x"], "org": {"plan": "pro"}}
        async with (
            serving(SnapshotHolder(build(document))) as (server, _),
            AsyncClient(target(server.port)) as client,
        ):
            hit = await client.evaluate("typed", context)
            miss = await client.evaluate("typed", {**context, "beta": "true"})
        assert (hit.value, hit.reason) == (True, Reason.TARGETING_MATCH)
        assert (miss.value, miss.reason) == (False, Reason.DEFAULT)

    @async_test
    async def test_evaluate_all_lists_every_flag_or_the_named_ones(self) -> None:
        async with serving() as (server, _), AsyncClient(target(server.port)) as client:
            everything = await client.evaluate_all({"tier": "gold"})
            some = await client.evaluate_all({}, keys=["float-flag", "nope"])
        assert [r.key for r in everything] == list(DOCUMENT["flags"])
        assert {r.key: r.value for r in everything}["shorthand-bool"] is True
        assert [(r.key, r.value, r.error_code) for r in some] == [
            ("float-flag", 0.5, None),
            ("nope", None, ErrorCode.FLAG_NOT_FOUND),
        ]


class TestBatch:
    @async_test
    async def test_a_batch_answers_every_cell_in_packed_form(self) -> None:
        contexts = [{"email": "a@example.com"}, {"email": "b@elsewhere.org"}, {}]
        keys = ["targeted-string", "static-bool", "nope", "disabled-flag"]
        async with serving() as (server, _), AsyncClient(target(server.port)) as client:
            batch = await client.evaluate_batch(keys, contexts)
        assert batch.keys == tuple(keys)
        assert batch.contexts == 3
        assert len(batch.variant_index) == 12
        assert [batch.value(c, "targeted-string") for c in range(3)] == ["#00f", "#f00", "#f00"]
        assert batch.cell(0, "targeted-string").reason is Reason.TARGETING_MATCH
        assert batch.cell(2, "static-bool").reason is Reason.STATIC
        assert batch.cell(1, "nope").error_code is ErrorCode.FLAG_NOT_FOUND
        assert batch.cell(1, "disabled-flag").variant is None
        assert batch.cell(1, "disabled-flag").reason is Reason.DISABLED
        assert batch.snapshot_version == 1

    @async_test
    async def test_no_keys_means_every_flag(self) -> None:
        async with serving() as (server, _), AsyncClient(target(server.port)) as client:
            batch = await client.evaluate_batch([], [{}])
        assert batch.keys == tuple(DOCUMENT["flags"])

    def test_the_blocking_client_pools_channels_and_streams_batches(self) -> None:
        async def scenario() -> None:
            async with serving() as (server, _):
                port = server.port

                def work() -> tuple[Any, ...]:
                    with Client(target(port), channels=3) as client:
                        single = client.evaluate("static-bool")
                        batches = list(
                            client.evaluate_stream(
                                [(["static-bool"], [{}, {}]), (["targeted-string"], [{}])]
                            )
                        )
                        all_ = client.evaluate_all()
                        return single, batches, all_

                single, batches, all_ = await asyncio.to_thread(work)
            assert single.value is True
            assert [b.request_id for b in batches] == [1, 2]
            assert [b.contexts for b in batches] == [2, 1]
            assert batches[1].value(0, 0) == "#f00"
            assert len(all_) == len(DOCUMENT["flags"])

        asyncio.run(scenario())

    @async_test
    async def test_the_stream_answers_each_batch_in_order(self) -> None:
        async def batches() -> AsyncIterator[tuple[list[str], list[dict[str, Any]]]]:
            for n in range(1, 6):
                yield ["int-flag"], [{"want": "pi"}] * n

        async with serving() as (server, _), AsyncClient(target(server.port)) as client:
            answers = [b async for b in client.evaluate_stream(batches())]
        assert [(b.request_id, b.contexts) for b in answers] == [(n, n) for n in range(1, 6)]
        assert all(b.value(0, 0) == 3.14 for b in answers)


class TestWatch:
    @async_test
    async def test_watch_starts_with_the_current_version_then_reports_changes(self) -> None:
        holder = SnapshotHolder(build())
        async with serving(holder) as (server, _), AsyncClient(target(server.port)) as client:
            events = client.watch()
            initial = await anext(events)
            document = copy.deepcopy(DOCUMENT)
            document["flags"]["float-flag"]["defaultVariant"] = "two"
            holder.install(build(document, version=5))
            change = await anext(events)
            await events.aclose()
        assert (initial.initial, initial.snapshot_version, initial.server_id) == (
            True,
            1,
            server.server_id,
        )
        assert (change.initial, change.snapshot_version, change.changed_keys) == (
            False,
            5,
            ("float-flag",),
        )

    @async_test
    async def test_a_watch_on_some_keys_hears_only_about_them(self) -> None:
        holder = SnapshotHolder(build())
        async with serving(holder) as (server, _), AsyncClient(target(server.port)) as client:
            events = client.watch(["static-bool"])
            await anext(events)
            document = copy.deepcopy(DOCUMENT)
            document["flags"]["float-flag"]["defaultVariant"] = "two"
            holder.install(build(document, version=2))
            document = copy.deepcopy(document)  # a built snapshot keeps its document
            document["flags"]["static-bool"]["defaultVariant"] = "off"
            holder.install(build(document, version=3))
            change = await anext(events)
            await events.aclose()
        assert (change.snapshot_version, change.changed_keys) == (3, ("static-bool",))


class _ExpiredDeadline:
    """A servicer context whose caller's deadline has already passed."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float:
        return 0.0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise _Aborted


class _Aborted(Exception):
    pass


class TestDeadlines:
    @async_test
    async def test_an_expired_deadline_is_deadline_exceeded(self) -> None:
        # A deadline a second in the past, not timeout=0: grpc sends a zero timeout rounded up
        # ("1n" on the wire, against a cached clock) and races its own deadline timer against
        # the answer, so on a loaded machine a zero deadline is sometimes met.
        async with serving() as (server, _), AsyncClient(target(server.port), timeout=-1) as client:
            try:
                await client.evaluate_batch(["static-bool"], [{}])
            except grpc.aio.AioRpcError as exc:
                assert exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            else:  # pragma: no cover
                raise AssertionError("a deadline in the past cannot be met")

    @async_test
    async def test_the_server_does_not_start_a_batch_whose_deadline_has_passed(self) -> None:
        # The client gives up on its own at its deadline, so the wire test above passes even
        # if the server ignores deadlines; this one asks the server itself.
        holder = SnapshotHolder(build())
        hub = ChangeHub(holder, asyncio.get_running_loop())
        servicer = NativeServicer(holder, hub, Limits(), clock=lambda: NOW, server_id="test")
        request = pb.EvaluateBatchRequest(flag_keys=["static-bool"])
        request.contexts.add()
        context = _ExpiredDeadline()
        try:
            await status.unary(servicer.EvaluateBatch)(request, context)  # type: ignore[arg-type]
        except _Aborted:
            pass
        finally:
            hub.close()
        assert context.aborted is not None
        assert context.aborted[0] is grpc.StatusCode.DEADLINE_EXCEEDED
