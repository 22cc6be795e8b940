"""``flagedge serve`` with every security option, as a real process: TLS with tokens on the
gRPC port, a certificate rotated on disk reaching new connections within 5 seconds without
a restart, the Unix socket, the management port on its own address and in plaintext, the
OpenFeature flagd provider connecting as the README shows, and bad security settings refused
at start with a clear message (exit 2)."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from flagedge.auth import entry_for, new_token
from flagedge.client import Client, channel_credentials
from tests.support.processes import SERVING_TEXT, ServeProcess
from tests.support.tls import Authority, presented_serial

CHILD = Path(__file__).parent / "support" / "openfeature_secure_client.py"
SECURED = "(TLS, tokens)"


def _flag(default: str) -> dict[str, object]:
    return {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": default}


FLAGS = {
    "flags": {
        "checkout-new": _flag("on"),
        "checkout-dark": _flag("off"),
        "billing-discount": _flag("on"),
    }
}


@dataclass
class Edge:
    server: ServeProcess
    port: int
    management_port: int
    ca: Authority
    ca_path: Path
    cert_path: Path
    key_path: Path
    socket_path: Path
    team_token: str
    team_token_file: Path
    full_token: str
    startup: str

    def credentials(self, token: str | None) -> grpc.ChannelCredentials:
        return channel_credentials(ca=self.ca.pem, token=token)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    directory = tmp_path_factory.mktemp("secured")
    ca = Authority()
    cert_path, key_path = ca.issue("edge").write(directory, "server")
    flags = directory / "flags.json"
    flags.write_text(json.dumps(FLAGS))
    team, full = new_token(), new_token()
    auth = directory / "auth.yaml"
    auth.write_text(
        json.dumps(
            {
                "tokens": [
                    entry_for("checkout", team, ["evaluate"], flags=["checkout-"]),
                    entry_for("platform", full, ["evaluate", "sync"]),
                ]
            }
        )
    )
    team_file = directory / "checkout.token"
    team_file.write_text(team + "\n")
    socket_path = directory / "flagedge.sock"
    server = ServeProcess(
        f"--flags={flags}",
        "--port=0",
        "--management-port=0",
        "--management-host=127.0.0.2",
        "--ofrep-port=any",
        "--workers=1",
        f"--server-cert-path={cert_path}",
        f"--server-key-path={key_path}",
        f"--auth-file={auth}",
        f"--socket-path={socket_path}",
        text=True,
    )
    found = server.next_line(SERVING_TEXT)
    try:
        yield Edge(
            server,
            int(found.group(2)),
            int(found.group(3)),
            ca,
            ca.write(directory / "ca.crt"),
            cert_path,
            key_path,
            socket_path,
            team,
            team_file,
            full,
            found.string,
        )
    finally:
        assert server.stop() == 0


def test_the_startup_line_says_how_the_edge_is_secured(edge: Edge) -> None:
    assert SECURED in edge.startup
    assert f"gRPC on the Unix socket {edge.socket_path} (mode 0660)" in edge.startup
    assert "management on 127.0.0.2:" in edge.startup


def test_the_grpc_port_answers_tls_with_a_token_and_refuses_plaintext(edge: Edge) -> None:
    target = f"127.0.0.1:{edge.port}"
    with Client(target, credentials=edge.credentials(edge.full_token)) as client:
        assert client.evaluate("billing-discount").value is True
    with Client(target, credentials=edge.credentials(edge.team_token)) as client:
        result = client.evaluate("billing-discount")
        assert result.value is None and result.error_code is not None
        assert result.error_code.value == "FLAG_NOT_FOUND"
        assert client.evaluate("checkout-new").value is True
    with Client(target, credentials=edge.credentials(None)) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.evaluate("checkout-new")
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(target) as client:  # plaintext
        with pytest.raises(grpc.RpcError) as caught:
            client.evaluate("checkout-new")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_sync_port_takes_the_same_tls_and_the_sync_scope(edge: Edge) -> None:
    from flagedge._proto.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

    found = re.search(r"sync on [^ ]+:(\d+)", edge.startup)
    assert found, edge.startup
    target = f"127.0.0.1:{found.group(1)}"
    request = sync_pb2.FetchAllFlagsRequest()
    with grpc.secure_channel(target, edge.credentials(edge.full_token)) as channel:
        answer = sync_pb2_grpc.FlagSyncServiceStub(channel).FetchAllFlags(request, timeout=5)
        assert set(json.loads(answer.flag_configuration)["flags"]) == set(FLAGS["flags"])
    for credentials, code in (
        (edge.credentials(edge.team_token), grpc.StatusCode.PERMISSION_DENIED),  # evaluate
        (None, grpc.StatusCode.UNAVAILABLE),  # plaintext
    ):
        with (
            grpc.insecure_channel(target)
            if credentials is None
            else grpc.secure_channel(target, credentials)
        ) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                sync_pb2_grpc.FlagSyncServiceStub(channel).FetchAllFlags(request, timeout=5)
            assert caught.value.code() == code


def _ofrep(port: int, flag: str, headers: dict[str, str], ca: Path | None) -> tuple[int, Any]:
    import ssl
    import urllib.error

    scheme = "http" if ca is None else "https"
    request = urllib.request.Request(
        f"{scheme}://localhost:{port}/ofrep/v1/evaluate/flags/{flag}",
        data=b'{"context": {"targetingKey": "u1"}}',
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    context = None if ca is None else ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_the_ofrep_port_takes_the_same_tls_and_tokens(edge: Edge) -> None:
    found = re.search(r"OFREP on [^ ]+:(\d+)", edge.startup)
    assert found, edge.startup
    port = int(found.group(1))
    team = {"Authorization": f"Bearer {edge.team_token}"}
    status, body = _ofrep(port, "checkout-new", team, edge.ca_path)
    assert (status, body["value"]) == (200, True)
    status, _ = _ofrep(port, "checkout-new", {"X-API-Key": edge.full_token}, edge.ca_path)
    assert status == 200
    assert _ofrep(port, "billing-discount", team, edge.ca_path)[0] == 404  # not its prefix
    assert _ofrep(port, "checkout-new", {}, edge.ca_path)[0] == 401
    with pytest.raises(OSError):  # plaintext HTTP to an HTTPS port
        _ofrep(port, "checkout-new", team, None)
    metrics = urllib.request.urlopen(
        f"http://127.0.0.2:{edge.management_port}/metrics", timeout=5
    ).read()
    assert b'flagedge_auth_failures_total{reason="missing"}' in metrics
    assert b'flagedge_client_calls_total{client="checkout"}' in metrics
    assert edge.team_token.encode() not in metrics


def test_the_unix_socket_is_plaintext_with_the_files_mode_and_still_wants_a_token(
    edge: Edge,
) -> None:
    assert stat.S_IMODE(edge.socket_path.stat().st_mode) == 0o660
    local = channel_credentials(token=edge.team_token, local=grpc.LocalConnectionType.UDS)
    with Client(f"unix:{edge.socket_path}", credentials=local) as client:
        assert client.evaluate("checkout-new").value is True
    with Client(f"unix:{edge.socket_path}") as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.evaluate("checkout-new")
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_management_port_is_plaintext_on_its_own_address(edge: Edge) -> None:
    url = f"http://127.0.0.2:{edge.management_port}/readyz"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert json.loads(response.read())["status"] == "ready"
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", edge.management_port), timeout=5),
    ):
        pass


def test_the_openfeature_flagd_provider_connects_with_tls_and_a_token(edge: Edge) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(CHILD),
            "localhost",
            str(edge.port),
            str(edge.ca_path),
            str(edge.team_token_file),
            "checkout-new",
            "checkout-dark",
            "billing-discount",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["checkout-new"] == {
        "value": True,
        "variant": "on",
        "reason": "STATIC",
        "error": None,
    }
    assert (results["checkout-dark"]["value"], results["checkout-dark"]["error"]) == (False, None)
    # Outside the token's prefixes: as if the flag did not exist.
    assert results["billing-discount"]["value"] is False
    assert results["billing-discount"]["error"] == "FLAG_NOT_FOUND"


def test_a_certificate_rotated_on_disk_reaches_new_connections_within_five_seconds(
    edge: Edge,
) -> None:
    target = f"127.0.0.1:{edge.port}"
    with Client(target, credentials=edge.credentials(edge.full_token)) as old:
        assert old.evaluate("checkout-new").value is True
        rotated = edge.ca.issue("edge, rotated")
        edge.key_path.write_bytes(rotated.key)
        edge.cert_path.write_bytes(rotated.cert)
        # The edge looks at its files every second; the promise is 5 seconds.
        deadline = time.monotonic() + 5.0
        while presented_serial(edge.port, edge.ca_path) != rotated.serial:
            assert time.monotonic() < deadline, "the new certificate was not served in 5 s"
            time.sleep(0.1)
        assert old.evaluate("checkout-new").value is True  # the open connection goes on
    edge.server.wait_log("loaded a new TLS certificate")


# -- refused at start ---------------------------------------------------------------------


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "flagedge", "serve", "--port=0", "--management-port=0"),
            *("--sync-port=off", "--ofrep-port=off", *args),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_security_settings_are_refused_at_start_with_a_clear_message(tmp_path: Path) -> None:
    ca = Authority()
    cert, key = ca.issue("edge").write(tmp_path, "server")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("this is not a certificate")
    regular = tmp_path / "regular-file"
    regular.write_text("keep me")
    broken_auth = tmp_path / "auth.json"
    broken_auth.write_text(json.dumps({"tokens": [{"name": "x", "sha256": "nope"}]}))
    cases = [
        ([f"--server-cert-path={cert}"], "go together"),
        ([f"--client-ca-path={cert}"], "needs --server-cert-path"),
        ([f"--server-cert-path={tmp_path / 'missing.crt'}", f"--server-key-path={key}"],
         "is not a readable file"),
        ([f"--socket-path={regular}"], "exists and is not a socket"),
        (["--socket-mode=0666"], "invalid choice"),
        ([f"--server-cert-path={not_pem}", f"--server-key-path={key}"], "cannot start"),
        ([f"--auth-file={broken_auth}"], "tokens[0].sha256"),
    ]  # fmt: skip
    for args, words in cases:
        done = _serve("--workers=1", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert regular.read_text() == "keep me"


def test_with_two_workers_worker_0_serves_the_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "flagedge.sock"
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(FLAGS))
    server = ServeProcess(
        f"--flags={flags}",
        "--port=0",
        "--management-port=0",
        "--workers=2",
        f"--socket-path={path}",
        "--socket-mode=0600",
        text=True,
    )
    try:
        lines = [server.next_line(SERVING_TEXT).string for _ in range(2)]
        assert sum(f"Unix socket {path}" in line for line in lines) == 1
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with Client(f"unix:{path}") as client:
            assert client.evaluate("checkout-new").value is True
    finally:
        assert server.stop() == 0
    assert not path.exists()
