"""Client tokens on every evaluation call: missing, malformed or unknown tokens answer
UNAUTHENTICATED with no detail, a token without the scope PERMISSION_DENIED; health and
reflection stay open. A token limited to flag prefixes sees only those flags: the others are
FLAG_NOT_FOUND, absent from every all-flags answer and never announced on its streams. Each
token name holds a limited number of open streams. Metrics name callers, never tokens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.auth import entry_for, new_token
from flagedge.serve.config import SecurityConfig
from flagedge.serve.security import Security
from flagedge.server import RunningServer, start_server
from flagedge.server.management import start_management
from flagedge.snapshot import SnapshotHolder
from tests.support.documents import DOCUMENT, NOW, build
from tests.support.server import async_test

# Flags of two teams: the checkout team's token sees "static-", "targeted-" and "int-".
TEAM_PREFIXES = ["static-", "targeted-", "int-"]


@dataclass
class Tokens:
    full: str  # evaluate, every flag
    team: str  # evaluate, TEAM_PREFIXES only
    sync_only: str  # scope sync: known, but may not evaluate
    path: Path


def write_auth(directory: Path) -> Tokens:
    tokens = Tokens(new_token(), new_token(), new_token(), directory / "auth.json")
    tokens.path.write_text(
        json.dumps(
            {
                "tokens": [
                    entry_for("platform", tokens.full, ["evaluate"]),
                    entry_for("checkout", tokens.team, ["evaluate"], flags=TEAM_PREFIXES),
                    entry_for("flag-sync", tokens.sync_only, ["sync"]),
                ]
            }
        )
    )
    return tokens


@contextlib.asynccontextmanager
async def guarded(
    tmp_path: Path, holder: SnapshotHolder | None = None, **kwargs: Any
) -> AsyncIterator[tuple[RunningServer, Tokens, grpc.aio.Channel, Security]]:
    tokens = write_auth(tmp_path)
    security = Security(SecurityConfig(auth_file=str(tokens.path)))
    server = await start_server(
        holder or SnapshotHolder(build()),
        authorize=security.authorize,
        clock=lambda: NOW,
        source="flags.json",
        **kwargs,
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, tokens, channel, security
    finally:
        await channel.close()
        await server.stop(0)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# Every evaluation method, with a request it accepts: (path, request, response type, kind).
METHODS: list[tuple[str, Any, Any, str]] = [
    ("/flagedge.v1.Evaluation/Evaluate", pb.EvaluateRequest(flag_key="static-bool"),
     pb.EvaluateResponse, "unary"),
    ("/flagedge.v1.Evaluation/EvaluateAll", pb.EvaluateAllRequest(), pb.EvaluateAllResponse,
     "unary"),
    ("/flagedge.v1.Evaluation/EvaluateBatch", pb.EvaluateBatchRequest(flag_keys=["static-bool"]),
     pb.EvaluateBatchResponse, "unary"),
    ("/flagedge.v1.Evaluation/Watch", pb.WatchRequest(), pb.WatchEvent, "stream"),
    ("/flagedge.v1.Evaluation/EvaluateStream", pb.EvaluateBatchRequest(flag_keys=["static-bool"]),
     pb.EvaluateBatchResponse, "bidi"),
    *(
        (f"/flagd.evaluation.{version}.Service/Resolve{kind}",
         getattr(module, f"Resolve{kind}Request")(flag_key=key),
         getattr(module, f"Resolve{kind}Response"), "unary")
        for version, module in (("v2", v2), ("v1", v1))
        for kind, key in (("Boolean", "static-bool"), ("String", "targeted-string"),
                          ("Int", "int-flag"), ("Float", "float-flag"), ("Object", "object-flag"))
    ),
    ("/flagd.evaluation.v1.Service/ResolveAll", v1.ResolveAllRequest(), v1.ResolveAllResponse,
     "unary"),
    ("/flagd.evaluation.v2.Service/EventStream", v2.EventStreamRequest(), v2.EventStreamResponse,
     "stream"),
    ("/flagd.evaluation.v1.Service/EventStream", v1.EventStreamRequest(), v1.EventStreamResponse,
     "stream"),
]  # fmt: skip


async def call(
    channel: grpc.aio.Channel, method: tuple[str, Any, Any, str], metadata: Any = None
) -> Any:
    """One call of ``method`` (a stream: its first message); RpcError when refused."""
    path, request, response, kind = method
    options = {"request_serializer": type(request).SerializeToString,
               "response_deserializer": response.FromString}  # fmt: skip
    if kind == "unary":
        return await channel.unary_unary(path, **options)(request, timeout=5, metadata=metadata)
    if kind == "stream":
        stream = channel.unary_stream(path, **options)(request, timeout=5, metadata=metadata)
    else:
        stream = channel.stream_stream(path, **options)(iter([request]), timeout=5,
                                                         metadata=metadata)  # fmt: skip
    try:
        return await stream.read()
    finally:
        stream.cancel()


async def status_of(channel: grpc.aio.Channel, method: Any, metadata: Any = None) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, method, metadata)
    return caught.value.code(), caught.value.details()


IDS = [m[0].rsplit(".", 1)[-1] for m in METHODS]


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@async_test
async def test_every_evaluation_call_needs_a_known_token_with_the_evaluate_scope(
    tmp_path: Path, method: tuple[str, Any, Any, str]
) -> None:
    async with guarded(tmp_path) as (_, tokens, channel, _):
        for metadata in (
            None,  # no authorization metadata
            (("authorization", tokens.full),),  # no scheme
            (("authorization", f"Basic {tokens.full}"),),
            (("authorization", "Bearer"),),
            (("authorization", f"Bearer {tokens.full} extra"),),
            bearer(new_token()),  # well formed, unknown
            bearer(tokens.full + "x"),
        ):
            code, details = await status_of(channel, method, metadata)
            assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, ""), metadata
        code, _ = await status_of(channel, method, bearer(tokens.sync_only))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert await call(channel, method, bearer(tokens.full)) is not None


@async_test
async def test_a_caller_without_a_token_learns_nothing_even_from_a_garbled_request(
    tmp_path: Path,
) -> None:
    async with guarded(tmp_path) as (_, tokens, channel, _):
        garbled = channel.unary_unary("/flagd.evaluation.v2.Service/ResolveBoolean")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await garbled(b"\xff\xff\xff", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await garbled(b"\xff\xff\xff", timeout=5, metadata=bearer(tokens.full))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@async_test
async def test_health_and_reflection_stay_open_without_a_token(tmp_path: Path) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with guarded(tmp_path) as (_, _, channel, _):
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
            names = {s.name for s in reply.list_services_response.service}
            assert "flagd.evaluation.v2.Service" in names
            break


@async_test
async def test_an_auth_file_change_admits_new_tokens_and_drops_removed_ones(
    tmp_path: Path,
) -> None:
    method = METHODS[0]
    async with guarded(tmp_path) as (_, tokens, channel, security):
        newcomer = new_token()
        tokens.path.write_text(
            json.dumps({"tokens": [entry_for("newcomer", newcomer, ["evaluate"])]})
        )
        os.utime(tokens.path, ns=(1, 1))  # a new signature even within one mtime tick
        await asyncio.to_thread(security.refresh)
        assert await call(channel, method, bearer(newcomer)) is not None
        code, _ = await status_of(channel, method, bearer(tokens.full))
        assert code == grpc.StatusCode.UNAUTHENTICATED


# -- flag prefixes -----------------------------------------------------------------------------


def _is_team(key: str) -> bool:
    return key.startswith(tuple(TEAM_PREFIXES))


@async_test
async def test_a_token_limited_to_prefixes_gets_flag_not_found_for_other_flags(
    tmp_path: Path,
) -> None:
    async with guarded(tmp_path) as (_, tokens, channel, _):
        team, full = bearer(tokens.team), bearer(tokens.full)
        evaluate = channel.unary_unary(
            "/flagedge.v1.Evaluation/Evaluate",
            request_serializer=pb.EvaluateRequest.SerializeToString,
            response_deserializer=pb.EvaluateResponse.FromString,
        )
        hidden = pb.EvaluateRequest(flag_key="object-flag")
        answer = await evaluate(hidden, metadata=team, timeout=5)
        assert answer.result.error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
        assert not answer.result.HasField("value") and answer.result.variant == ""
        answer = await evaluate(hidden, metadata=full, timeout=5)
        assert answer.result.variant == "a"
        answer = await evaluate(pb.EvaluateRequest(flag_key="static-bool"), metadata=team,
                                timeout=5)  # fmt: skip
        assert answer.result.value.bool_value is True

        for version, module in (("v2", v2), ("v1", v1)):
            resolve = channel.unary_unary(
                f"/flagd.evaluation.{version}.Service/ResolveObject",
                request_serializer=module.ResolveObjectRequest.SerializeToString,
                response_deserializer=module.ResolveObjectResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await resolve(module.ResolveObjectRequest(flag_key="object-flag"), metadata=team,
                              timeout=5)  # fmt: skip
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert caught.value.details() == "Flag not found"
            assert await resolve(module.ResolveObjectRequest(flag_key="object-flag"),
                                 metadata=full, timeout=5)  # fmt: skip


@async_test
async def test_flags_outside_a_tokens_prefixes_are_absent_from_every_all_flags_answer(
    tmp_path: Path,
) -> None:
    async with guarded(tmp_path) as (_, tokens, channel, _):
        team = bearer(tokens.team)
        everything = set(DOCUMENT["flags"])
        visible = {k for k in everything if _is_team(k)}
        assert visible and visible != everything

        all_call = channel.unary_unary(
            "/flagedge.v1.Evaluation/EvaluateAll",
            request_serializer=pb.EvaluateAllRequest.SerializeToString,
            response_deserializer=pb.EvaluateAllResponse.FromString,
        )
        answer = await all_call(pb.EvaluateAllRequest(), metadata=team, timeout=5)
        assert {r.key for r in answer.results} == visible
        answer = await all_call(pb.EvaluateAllRequest(), metadata=bearer(tokens.full), timeout=5)
        assert {r.key for r in answer.results} == everything

        resolve_all = channel.unary_unary(
            "/flagd.evaluation.v1.Service/ResolveAll",
            request_serializer=v1.ResolveAllRequest.SerializeToString,
            response_deserializer=v1.ResolveAllResponse.FromString,
        )
        answer_v1 = await resolve_all(v1.ResolveAllRequest(), metadata=team, timeout=5)
        assert set(answer_v1.flags) and set(answer_v1.flags) <= visible

        batch = channel.unary_unary(
            "/flagedge.v1.Evaluation/EvaluateBatch",
            request_serializer=pb.EvaluateBatchRequest.SerializeToString,
            response_deserializer=pb.EvaluateBatchResponse.FromString,
        )
        request = pb.EvaluateBatchRequest()
        request.contexts.add()
        answer_b = await batch(request, metadata=team, timeout=5)
        assert {t.key for t in answer_b.flags} == visible
        # Named explicitly, a hidden flag is a cell with FLAG_NOT_FOUND and an empty table;
        # the table cached for it must not leak to (or from) a caller who sees it.
        request.flag_keys.extend(["object-flag", "static-bool"])
        answer_b = await batch(request, metadata=team, timeout=5)
        assert list(answer_b.flags[0].variants) == []
        assert answer_b.error_codes[0] == pb.ERROR_CODE_FLAG_NOT_FOUND
        answer_b = await batch(request, metadata=bearer(tokens.full), timeout=5)
        assert sorted(answer_b.flags[0].variants) == ["a", "b"]
        answer_b = await batch(request, metadata=team, timeout=5)
        assert list(answer_b.flags[0].variants) == []


def _swap(**defaults: str) -> dict[str, Any]:
    doc = json.loads(json.dumps(DOCUMENT))
    for key, default in defaults.items():
        doc["flags"][key.replace("_", "-")]["defaultVariant"] = default
    return doc


@async_test
async def test_changes_to_flags_outside_a_tokens_prefixes_are_not_announced_to_it(
    tmp_path: Path,
) -> None:
    holder = SnapshotHolder(build())
    async with guarded(tmp_path, holder) as (_, tokens, channel, _):
        team = bearer(tokens.team)
        watch = channel.unary_stream(
            "/flagedge.v1.Evaluation/Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchEvent.FromString,
        )(pb.WatchRequest(), metadata=team)
        events = channel.unary_stream(
            "/flagd.evaluation.v2.Service/EventStream",
            request_serializer=v2.EventStreamRequest.SerializeToString,
            response_deserializer=v2.EventStreamResponse.FromString,
        )(v2.EventStreamRequest(), metadata=team)
        everyone = channel.unary_stream(
            "/flagedge.v1.Evaluation/Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchEvent.FromString,
        )(pb.WatchRequest(), metadata=bearer(tokens.full))
        assert (await watch.read()).initial and (await everyone.read()).initial
        assert (await events.read()).type == "provider_ready"
        flush = await events.read()  # every flag the caller may see, named as changed
        assert flush.type == "configuration_change"
        assert set(flush.data["flags"]) == {k for k in DOCUMENT["flags"] if _is_team(k)}

        holder.install(build(_swap(object_flag="b"), version=2))  # hidden from the team
        holder.install(build(_swap(object_flag="b", static_bool="off"), version=3))  # visible
        seen = await asyncio.wait_for(watch.read(), 10)
        assert (list(seen.changed_keys), seen.snapshot_version) == (["static-bool"], 3)
        change = await asyncio.wait_for(events.read(), 10)
        assert set(change.data["flags"]) == {"static-bool"}
        # the full token hears both changes: as two events, or as one when the second
        # install lands before the first is sent (a watcher coalesces)
        heard: set[str] = set()
        while True:
            event = await asyncio.wait_for(everyone.read(), 10)
            heard.update(event.changed_keys)
            if event.snapshot_version == 3:
                break
        assert heard == {"object-flag", "static-bool"}
        for stream in (watch, events, everyone):
            stream.cancel()


# -- streams per token -------------------------------------------------------------------------


@async_test
async def test_each_token_name_holds_at_most_its_limit_of_open_streams(tmp_path: Path) -> None:
    async with guarded(tmp_path, max_streams_per_token=2) as (server, tokens, channel, _):
        watch = channel.unary_stream(
            "/flagedge.v1.Evaluation/Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchEvent.FromString,
        )
        mine = [watch(pb.WatchRequest(), metadata=bearer(tokens.team)) for _ in range(2)]
        for stream in mine:
            assert (await stream.read()).initial
        third = watch(pb.WatchRequest(), metadata=bearer(tokens.team))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await third.read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "checkout" in caught.value.details()
        # Another token name has its own slots; unary calls are never limited.
        other = watch(pb.WatchRequest(), metadata=bearer(tokens.full))
        assert (await other.read()).initial
        assert await call(channel, METHODS[0], bearer(tokens.team)) is not None

        mine[0].cancel()
        for _ in range(100):  # the server hears of the cancel on its own time
            again = watch(pb.WatchRequest(), metadata=bearer(tokens.team))
            try:
                assert (await again.read()).initial
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("a closed stream never gave its slot back")
        assert server.metrics.streams_refused["checkout"] >= 1
        for stream in (*mine, other, again):
            stream.cancel()


# -- metrics and logs ---------------------------------------------------------------------------


@async_test
async def test_metrics_count_refusals_by_reason_and_calls_by_name_never_by_token(
    tmp_path: Path,
) -> None:
    async with guarded(tmp_path) as (server, tokens, channel, _):
        management = await start_management(
            "127.0.0.1", 0, server.serving, metrics=server.metrics.exposition
        )
        try:
            method = METHODS[0]
            stranger = new_token()
            for metadata in (None, bearer(stranger), (("authorization", "Basic x"),),
                             bearer(tokens.sync_only)):  # fmt: skip
                await status_of(channel, method, metadata)
            for _ in range(3):
                await call(channel, method, bearer(tokens.team))
            url = f"http://127.0.0.1:{management.port}/metrics"
            text = await asyncio.to_thread(_get, url)
        finally:
            await management.close()
    for reason in ("missing", "unknown", "malformed", "scope"):
        assert f'flagedge_auth_failures_total{{reason="{reason}"}} 1.0' in text
    assert 'flagedge_client_calls_total{client="checkout"} 3.0' in text
    for secret in (tokens.full, tokens.team, tokens.sync_only, stranger):
        assert secret not in text


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


@async_test
async def test_refusals_are_logged_by_reason_and_peer_at_most_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with guarded(tmp_path) as (_, _, channel, _):
        stranger = new_token()
        with caplog.at_level("WARNING", logger="flagedge.auth"):
            for _ in range(5):
                await status_of(channel, METHODS[0], bearer(stranger))
    lines = [r.getMessage() for r in caplog.records if r.name == "flagedge.auth"]
    assert len(lines) == 1 and "a token the auth file does not list" in lines[0]
    assert stranger not in lines[0]


def test_without_an_auth_file_every_caller_is_served_as_before() -> None:
    security = Security(SecurityConfig())
    assert not security.checks_tokens
    assert security.identify(None).name == "anonymous"


def test_the_bearer_scheme_is_read_as_rfc_6750_writes_it() -> None:
    from flagedge.serve.security import bearer

    assert bearer("Bearer abc-_1") == "abc-_1"
    assert bearer("bearer abc") == bearer("  BEARER   abc  ") == "abc"
    for malformed in (None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "abc"):
        assert bearer(malformed) is None, malformed


@async_test
async def test_the_flagd_selector_still_applies_to_a_call_with_a_token(tmp_path: Path) -> None:
    async with guarded(tmp_path) as (_, tokens, channel, _):
        resolve = channel.unary_unary(
            "/flagd.evaluation.v2.Service/ResolveBoolean",
            request_serializer=v2.ResolveBooleanRequest.SerializeToString,
            response_deserializer=v2.ResolveBooleanResponse.FromString,
        )
        metadata = (*bearer(tokens.full), ("flagd-selector", "flagSetId=other"))
        answer = await resolve(v2.ResolveBooleanRequest(flag_key="other-set"), metadata=metadata)
        assert answer.value is True
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await resolve(v2.ResolveBooleanRequest(flag_key="static-bool"), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
