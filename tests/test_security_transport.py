"""Transport security on the gRPC port: TLS refuses plaintext; mutual TLS asks for a client
certificate from the client CA; a rotated certificate (rewritten in place, or swapped in as
Kubernetes swaps a Secret's ``..data`` symlink) reaches new connections while open ones keep
going; a half-done rotation keeps the working pair. The Unix socket for sidecars (its file
mode, tokens still checked). Real certificates, real grpc servers and clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.auth import entry_for, new_token
from flagedge.client import channel_credentials
from flagedge.serve.config import SecurityConfig
from flagedge.serve.security import Security
from flagedge.server import RunningServer, start_server
from flagedge.snapshot import SnapshotHolder
from tests.support.documents import DOCUMENT, build
from tests.support.server import async_test
from tests.support.tls import Authority, Issued, presented_serial

RESOLVE = "/flagd.evaluation.v2.Service/ResolveBoolean"


@dataclass
class Pki:
    ca: Authority
    ca_path: Path
    cert_path: Path
    key_path: Path
    first: Issued


def make_pki(directory: Path) -> Pki:
    ca = Authority()
    first = ca.issue("flagedge edge")
    cert, key = first.write(directory, "server")
    return Pki(ca, ca.write(directory / "ca.crt"), cert, key, first)


async def resolve(channel: grpc.aio.Channel, key: str = "static-bool", **kwargs: object) -> bool:
    call = channel.unary_unary(
        RESOLVE,
        request_serializer=v2.ResolveBooleanRequest.SerializeToString,
        response_deserializer=v2.ResolveBooleanResponse.FromString,
    )
    answer = await call(v2.ResolveBooleanRequest(flag_key=key), timeout=5, **kwargs)
    return bool(answer.value)


@contextlib.asynccontextmanager
async def secured(
    config: SecurityConfig, holder: SnapshotHolder | None = None, **kwargs: object
) -> AsyncIterator[tuple[RunningServer, Security]]:
    security = Security(config)
    server = await start_server(
        holder or SnapshotHolder(build()),
        credentials=security.grpc_credentials(),
        authorize=security.authorize if security.checks_tokens else None,
        **kwargs,  # type: ignore[arg-type]
    )
    try:
        yield server, security
    finally:
        await server.stop(0)


def tls_channel(port: int, ca: Authority, client: Issued | None = None) -> grpc.aio.Channel:
    creds = channel_credentials(
        ca=ca.pem,
        cert=None if client is None else client.cert,
        key=None if client is None else client.key,
    )
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)


async def refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resolve(channel)
    await channel.close()
    return caught.value.code()


@async_test
async def test_with_a_certificate_the_port_speaks_tls_and_refuses_plaintext(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)
    config = SecurityConfig(str(pki.cert_path), str(pki.key_path))
    async with secured(config) as (server, _):
        async with tls_channel(server.port, pki.ca) as channel:
            assert await resolve(channel) is True
        assert await refused(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")) in (
            grpc.StatusCode.UNAVAILABLE,
        )
        stranger = Authority("someone else's CA")
        assert await refused(tls_channel(server.port, stranger)) == grpc.StatusCode.UNAVAILABLE
        assert presented_serial(server.port, pki.ca_path) == pki.first.serial


@async_test
async def test_mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)
    clients = Authority("client CA")
    config = SecurityConfig(
        str(pki.cert_path), str(pki.key_path), str(clients.write(tmp_path / "clients.crt"))
    )
    async with secured(config) as (server, _):
        member = clients.issue("checkout-service", client=True)
        async with tls_channel(server.port, pki.ca, member) as channel:
            assert await resolve(channel) is True
        assert await refused(tls_channel(server.port, pki.ca)) == grpc.StatusCode.UNAVAILABLE
        outsider = Authority("another client CA").issue("intruder", client=True)
        assert (
            await refused(tls_channel(server.port, pki.ca, outsider)) == grpc.StatusCode.UNAVAILABLE
        )


async def _watch_events(channel: grpc.aio.Channel) -> AsyncIterator[pb.WatchEvent]:
    call = channel.unary_stream(
        "/flagedge.v1.Evaluation/Watch",
        request_serializer=pb.WatchRequest.SerializeToString,
        response_deserializer=pb.WatchEvent.FromString,
    )
    async for event in call(pb.WatchRequest()):
        yield event


def _changed_document(default: str) -> dict[str, object]:
    doc = json.loads(json.dumps(DOCUMENT))
    doc["flags"]["static-bool"]["defaultVariant"] = default
    return doc


async def _rotation_reaches_new_connections_only(
    rotate: object, pki: Pki, cert_path: Path, key_path: Path
) -> None:
    holder = SnapshotHolder(build())
    async with secured(SecurityConfig(str(cert_path), str(key_path)), holder) as (server, sec):
        async with tls_channel(server.port, pki.ca) as old:
            assert await resolve(old) is True
            events = _watch_events(old)
            assert (await anext(events)).initial

            second = pki.ca.issue("flagedge edge, rotated")
            assert callable(rotate)
            rotate(second)
            await asyncio.to_thread(sec.refresh)
            assert presented_serial(server.port, pki.ca_path) == second.serial

            # The connection opened before the rotation was not cut: its stream still hears
            # changes and its channel still answers.
            holder.install(build(_changed_document("off"), version=2))
            change = await asyncio.wait_for(anext(events), 10)
            assert change.changed_keys == ["static-bool"] and change.snapshot_version == 2
            assert await resolve(old) is False
        async with tls_channel(server.port, pki.ca) as new:
            assert await resolve(new) is False


@async_test
async def test_a_certificate_rewritten_in_place_reaches_new_connections_and_open_ones_go_on(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)

    def rewrite(issued: Issued) -> None:
        pki.key_path.write_bytes(issued.key)
        pki.cert_path.write_bytes(issued.cert)

    await _rotation_reaches_new_connections_only(rewrite, pki, pki.cert_path, pki.key_path)


@async_test
async def test_a_kubernetes_style_symlink_swap_rotates_the_certificate(tmp_path: Path) -> None:
    """A mounted Secret: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/; an update writes
    a new timestamped directory and renames a new ..data link over the old one."""
    pki = make_pki(tmp_path / "issued")
    mount = tmp_path / "secret"
    mount.mkdir()

    def publish(issued: Issued, name: str) -> None:
        version = mount / name
        version.mkdir()
        (version / "tls.crt").write_bytes(issued.cert)
        (version / "tls.key").write_bytes(issued.key)
        staging = mount / "..data_tmp"
        staging.symlink_to(name)
        os.replace(staging, mount / "..data")

    publish(pki.first, "..2026_01_01_00_00_00.1")
    for name in ("tls.crt", "tls.key"):
        (mount / name).symlink_to(f"..data/{name}")

    def swap(issued: Issued) -> None:
        publish(issued, "..2026_01_01_00_05_00.2")

    await _rotation_reaches_new_connections_only(swap, pki, mount / "tls.crt", mount / "tls.key")


@async_test
async def test_a_half_done_rotation_keeps_serving_the_last_working_pair(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    config = SecurityConfig(str(pki.cert_path), str(pki.key_path))
    async with secured(config) as (server, security):
        second = pki.ca.issue("flagedge edge, rotated")
        pki.cert_path.write_bytes(second.cert)  # the key is not there yet
        await asyncio.to_thread(security.refresh)
        assert presented_serial(server.port, pki.ca_path) == pki.first.serial
        async with tls_channel(server.port, pki.ca) as channel:
            assert await resolve(channel) is True

        pki.key_path.write_bytes(second.key)
        await asyncio.to_thread(security.refresh)
        assert presented_serial(server.port, pki.ca_path) == second.serial


# -- the Unix socket ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o660, 0o600])
@async_test
async def test_the_unix_socket_serves_grpc_with_the_file_mode_asked_for(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "flagedge.sock"
    async with secured(SecurityConfig(), socket_path=str(path), socket_mode=mode):
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == mode
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            assert await resolve(channel) is True
    assert not path.exists()  # removed on stop


@async_test
async def test_tokens_are_checked_on_the_unix_socket_too(tmp_path: Path) -> None:
    token = new_token()
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"tokens": [entry_for("sidecar-app", token, ["evaluate"])]}))
    path = tmp_path / "flagedge.sock"
    async with secured(SecurityConfig(auth_file=str(auth)), socket_path=str(path)):
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            assert await refused_call(channel) == grpc.StatusCode.UNAUTHENTICATED
        creds = channel_credentials(token=token, local=grpc.LocalConnectionType.UDS)
        async with grpc.aio.secure_channel(f"unix:{path}", creds) as channel:
            assert await resolve(channel) is True


async def refused_call(channel: grpc.aio.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resolve(channel)
    return caught.value.code()


@async_test
async def test_a_file_at_the_socket_path_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    with pytest.raises(OSError, match="not a socket"):
        async with secured(SecurityConfig(), socket_path=str(path)):
            pass
    assert path.read_text() == "precious"


@async_test
async def test_an_http_listeners_ssl_context_follows_rotation_and_asks_for_client_certs(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)
    clients = Authority("client CA")
    security = Security(
        SecurityConfig(
            str(pki.cert_path), str(pki.key_path), str(clients.write(tmp_path / "clients.crt"))
        )
    )
    context = security.ssl_context()
    assert context is not None and context.verify_mode.name == "CERT_REQUIRED"
    context.verify_mode = ssl.CERT_OPTIONAL  # presented_serial brings no client certificate

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        first = await asyncio.to_thread(presented_serial, port, pki.ca_path)
        assert first == pki.first.serial
        second = pki.ca.issue("flagedge edge, rotated")
        pki.key_path.write_bytes(second.key)
        pki.cert_path.write_bytes(second.cert)
        await asyncio.to_thread(security.refresh)
        assert await asyncio.to_thread(presented_serial, port, pki.ca_path) == second.serial
    finally:
        server.close()
        await server.wait_closed()
