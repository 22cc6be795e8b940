"""The flagd sync service takes the same security as the evaluation port: TLS from the same
certificate (plaintext refused), and with an auth file a token with scope ``sync`` on every
call (``evaluate`` alone is PERMISSION_DENIED); a token limited to flag prefixes is sent only
those flags' rules, and a change to another flag sends it nothing. Real servers, real
clients, real certificates."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flagedge._proto.flagd.sync.v1 import sync_pb2, sync_pb2_grpc
from flagedge.auth import entry_for, new_token
from flagedge.client import channel_credentials
from flagedge.model import Override, OverrideKind
from flagedge.serve.config import SecurityConfig
from flagedge.serve.security import Security
from flagedge.server.rpc import start_sync_server
from flagedge.snapshot import SnapshotHolder
from tests.support.documents import DOCUMENT, build
from tests.support.server import async_test
from tests.support.tls import Authority

TEAM = ["static-", "targeted-"]


@contextlib.asynccontextmanager
async def secured_sync(
    tmp_path: Path, holder: SnapshotHolder
) -> AsyncIterator[tuple[int, Authority, dict[str, str]]]:
    ca = Authority()
    cert, key = ca.issue("edge").write(tmp_path, "server")
    tokens = {"all": new_token(), "team": new_token(), "evaluate": new_token()}
    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps(
            {
                "tokens": [
                    entry_for("provider", tokens["all"], ["sync"]),
                    entry_for("team-provider", tokens["team"], ["sync"], flags=TEAM),
                    entry_for("rpc-only", tokens["evaluate"], ["evaluate"]),
                ]
            }
        )
    )
    security = Security(SecurityConfig(str(cert), str(key), auth_file=str(auth)))
    server = await start_sync_server(
        holder,
        "127.0.0.1",
        0,
        source="flags.json",
        credentials=security.grpc_credentials(),
        authorize=security.authorize,
    )
    try:
        yield server.port, ca, tokens
    finally:
        await server.stop(0)


def stub(port: int, ca: Authority | None, token: str | None) -> Any:
    if ca is None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    else:
        creds = channel_credentials(ca=ca.pem, token=token)
        channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)
    return channel, sync_pb2_grpc.FlagSyncServiceStub(channel)


def keys(message: Any) -> set[str]:
    return set(json.loads(message.flag_configuration)["flags"])


@async_test
async def test_the_sync_port_speaks_tls_and_wants_a_token_with_the_sync_scope(
    tmp_path: Path,
) -> None:
    async with secured_sync(tmp_path, SnapshotHolder(build())) as (port, ca, tokens):
        channel, sync = stub(port, ca, tokens["all"])
        async with channel:
            answer = await sync.FetchAllFlags(sync_pb2.FetchAllFlagsRequest(), timeout=5)
            assert keys(answer) == set(DOCUMENT["flags"])
        for ca_used, token, code in (
            (None, None, grpc.StatusCode.UNAVAILABLE),  # plaintext
            (ca, None, grpc.StatusCode.UNAUTHENTICATED),
            (ca, new_token(), grpc.StatusCode.UNAUTHENTICATED),
            (ca, tokens["evaluate"], grpc.StatusCode.PERMISSION_DENIED),
        ):
            channel, sync = stub(port, ca_used, token)
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await sync.FetchAllFlags(sync_pb2.FetchAllFlagsRequest(), timeout=5)
                assert caught.value.code() == code
                stream = sync.SyncFlags(sync_pb2.SyncFlagsRequest(), timeout=5)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stream.read()
                assert caught.value.code() == code


@async_test
async def test_a_token_limited_to_prefixes_is_sent_only_those_flags_rules(
    tmp_path: Path,
) -> None:
    holder = SnapshotHolder(build())
    async with secured_sync(tmp_path, holder) as (port, ca, tokens):
        visible = {k for k in DOCUMENT["flags"] if k.startswith(tuple(TEAM))}
        team_channel, team = stub(port, ca, tokens["team"])
        all_channel, everyone = stub(port, ca, tokens["all"])
        async with team_channel, all_channel:
            fetched = await team.FetchAllFlags(sync_pb2.FetchAllFlagsRequest(), timeout=5)
            assert keys(fetched) == visible
            team_stream = team.SyncFlags(sync_pb2.SyncFlagsRequest())
            all_stream = everyone.SyncFlags(sync_pb2.SyncFlagsRequest())
            assert keys(await team_stream.read()) == visible
            assert keys(await all_stream.read()) == set(DOCUMENT["flags"])

            def kill(key: str) -> None:
                snap = holder.current
                assert snap is not None
                overrides = {key: Override(OverrideKind.KILL, None)}
                holder.install(snap.with_overrides(overrides, snap.version + 1))

            kill("object-flag")  # hidden from the team: its stream hears nothing
            kill("static-bool")
            first = json.loads((await asyncio.wait_for(team_stream.read(), 5)).flag_configuration)
            assert set(first["flags"]) == visible
            assert first["flags"]["static-bool"]["state"] == "DISABLED"
            everything = json.loads((await all_stream.read()).flag_configuration)["flags"]
            assert everything["object-flag"]["state"] == "DISABLED"
            team_stream.cancel()
            all_stream.cancel()
