"""No secret ever leaves the process: Redis passwords (in the URL, the Sentinel password),
client tokens (known and unknown ones, in calls) and the TLS private key appear in none of
the edges' logs (at debug level), /metrics, /readyz, the heartbeats, usage and audit data in
Redis, or the CLI's output and error messages. Everything runs for real, using every secret,
and every output is searched for each one."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flagedge.auth import entry_for, new_token
from flagedge.client import Client, channel_credentials
from tests.support.documents import document
from tests.support.ports import free_port
from tests.support.processes import Edge
from tests.support.redis_acl import ADMIN, start_acl_redis
from tests.support.redis_server import RedisServer
from tests.support.tls import Authority
from tests.support.wait import wait_until

ENV = "prod"
SERVING = r"serving gRPC on [^ ]+:(\d+), management on [^ ]+:(\d+)"


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    return body.decode()


@contextlib.contextmanager
def sentinel(directory: Path, master_port: int, own_password: str, monitor: str) -> Iterator[int]:
    """A sentinel with a password of its own, watching the master as mymaster (it signs in
    to the master as the test's administrator)."""
    server = RedisServer(
        directory,
        sentinel=True,
        password=own_password,
        config=f"requirepass {own_password}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds mymaster 60000\n"
        f"sentinel auth-user mymaster {ADMIN}\n"
        f"sentinel auth-pass mymaster {monitor}\n",
    ).start()
    try:

        def knows_master() -> bool:
            with contextlib.closing(server.client()) as client:
                reply = client.execute_command("SENTINEL", "get-master-addr-by-name", "mymaster")
            return reply is not None and int(reply[1]) == master_port

        wait_until("the sentinel to know the master", knows_master, 15)
        yield server.port
    finally:
        server.kill()


def _cli(*args: str, env: dict[str, str]) -> str:
    """Run the CLI as a process; its whole output (stdout and stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "flagedge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    return f"$ flagedge {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"


def test_no_secret_appears_in_any_log_metric_probe_heartbeat_audit_or_message(
    tmp_path: Path,
) -> None:
    sentinel_pw = secrets.token_urlsafe(18)
    acl = start_acl_redis(tmp_path / "redis")
    redis_server = acl.server
    edge_pw, writer_pw, monitor_pw = acl.edge_password, acl.writer_password, acl.admin_password

    ca = Authority()
    issued = ca.issue("edge")
    cert, key = issued.write(tmp_path / "tls", "server")
    key_lines = [line for line in issued.key.decode().splitlines() if "-----" not in line]
    token, team_token, stranger = new_token(), new_token(), new_token()
    auth = tmp_path / "auth.json"
    auth.write_text(
        json.dumps(
            {
                "tokens": [
                    entry_for("platform", token, ["evaluate"]),
                    entry_for("team", team_token, ["evaluate"], flags=["a"]),
                ]
            }
        )
    )
    edge_url, writer_url = acl.edge_url, acl.writer_url
    writer_env = {"FLAGEDGE_REDIS_URL": writer_url, "FLAGEDGE_ENV": ENV}
    outputs: dict[str, str] = {}

    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(document(a="on", b="off")))
    outputs["push"] = _cli("push", str(flags), env=writer_env)
    assert "-> 0" in outputs["push"], outputs["push"]

    secured = (
        f"--server-cert-path={cert}",
        f"--server-key-path={key}",
        f"--auth-file={auth}",
        "--log-level=debug",
        "--usage-interval=0.2",
        "--ofrep-port=any",  # the HTTP front door too: tokens in headers
    )
    try:
        # Two workers: the supervisor hands each the configuration, password included.
        direct = Edge(edge_url, ENV, tmp_path / "lkg-direct.json", "--workers=2", *secured)
        os.environ["FLAGEDGE_SENTINEL_PASSWORD"] = sentinel_pw  # taken from the variable only
        with sentinel(tmp_path / "sentinel", redis_server.port, sentinel_pw, monitor_pw) as sp:
            via_sentinel = Edge(
                f"redis://flagedge-edge-prod:{edge_pw}@sentinel",
                ENV,
                tmp_path / "lkg-sentinel.json",
                f"--sentinel=127.0.0.1:{sp}",
                "--sentinel-master=mymaster",
                *secured,
            )
            os.environ.pop("FLAGEDGE_SENTINEL_PASSWORD")
            edges = {"direct": direct, "sentinel": via_sentinel}
            try:
                for edge in edges.values():
                    found = edge.wait_log(SERVING)
                    edge.port, edge.management_port = int(found.group(1)), int(found.group(2))
                    _exercise(edge.port, ca, token, team_token, stranger)
                    ofrep = edge.wait_log(r"OFREP on [^ ]+:(\d+)")
                    _exercise_http(int(ofrep.group(1)), ca, token, stranger)
                outputs["kill"] = _cli("kill", "a", "--wait", env=writer_env)
                assert "-> 0" in outputs["kill"], outputs["kill"]
                for args in (
                    ("rollout", "b", "25", "--variant", "on"),
                    ("restore", "a"),
                    ("status",),
                    ("status", "--json"),
                    ("get", "--json"),
                    ("audit", "--json"),
                    ("stale", "--json"),
                ):
                    outputs[" ".join(args)] = _cli(*args, env=writer_env)
                # Refusals and failures say what went wrong without the credentials used.
                outputs["push as the edge user"] = _cli(
                    "push", str(flags), env={**writer_env, "FLAGEDGE_REDIS_URL": edge_url}
                )
                port = redis_server.port
                wrong = f"redis://flagedge-writer-prod:{secrets.token_urlsafe(12)}@127.0.0.1:{port}"
                outputs["wrong password"] = _cli(
                    "get", env={**writer_env, "FLAGEDGE_REDIS_URL": wrong}
                )
                gone = f"redis://flagedge-writer-prod:{writer_pw}@127.0.0.1:{free_port()}"
                outputs["unreachable"] = _cli(
                    "status", env={**writer_env, "FLAGEDGE_REDIS_URL": gone}
                )
                monitor = redis_server.client()
                with contextlib.closing(monitor):
                    usage = f"flagedge:{ENV}:usage:2*"
                    wait_until("usage reports", lambda: list(monitor.scan_iter(match=usage)))
                for name, edge in edges.items():
                    outputs[f"{name} /metrics"] = _get(
                        f"http://127.0.0.1:{edge.management_port}/metrics"
                    )
                    outputs[f"{name} /readyz"] = _get(
                        f"http://127.0.0.1:{edge.management_port}/readyz"
                    )
                outputs["redis data"] = _dump(redis_server)
            finally:
                for name, edge in edges.items():
                    edge.stop()
                    outputs[f"{name} log"] = edge.text()
    finally:
        os.environ.pop("FLAGEDGE_SENTINEL_PASSWORD", None)
        redis_server.kill()

    # The run did what it claims: refusals happened, each output is there.
    assert "refused the command" in outputs["push as the edge user"]
    assert "-> 3" in outputs["unreachable"] and "-> 0" in outputs["status --json"]
    assert "3 live edge(s)" in outputs["status"]  # two workers and the sentinel edge
    for name in ("direct", "sentinel"):
        assert 'flagedge_auth_failures_total{reason="unknown"}' in outputs[f"{name} /metrics"]
        assert 'flagedge_evaluations_total{flag="a",reason="STATIC"' in outputs[f"{name} /metrics"]
        assert json.loads(outputs[f"{name} /readyz"])["source"] == "redis"
    assert "edge:" in outputs["redis data"] and "audit" in outputs["redis data"]
    for name in ("direct log", "sentinel log"):
        assert '"level":"debug"' in outputs[name] or "debug" in outputs[name]

    named = {
        "the edge user's Redis password": edge_pw,
        "the writer user's Redis password": writer_pw,
        "the sentinel password": sentinel_pw,
        "the test administrator's password (the sentinel signs in with it)": monitor_pw,
        "a client token": token,
        "a prefix-limited client token": team_token,
        "an unknown token presented in calls": stranger,
        **{f"line {i} of the TLS private key": line for i, line in enumerate(key_lines)},
    }
    leaks = [
        f"{what} in {where}"
        for where, text in outputs.items()
        for what, secret in named.items()
        if secret in text
    ]
    assert not leaks, "\n".join(leaks)


def _exercise(port: int, ca: Authority, token: str, team_token: str, stranger: str) -> None:
    """Calls with every token: good ones, a limited one, an unknown one, none at all."""
    target = f"127.0.0.1:{port}"
    for presented in (token, team_token):
        with Client(target, credentials=channel_credentials(ca=ca.pem, token=presented)) as c:
            for _ in range(20):
                c.evaluate("a")
                c.evaluate("b")
            c.evaluate_all()
    for presented in (stranger, None):
        with Client(target, credentials=channel_credentials(ca=ca.pem, token=presented)) as c:
            with pytest.raises(grpc.RpcError) as caught:
                c.evaluate("a")
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _exercise_http(port: int, ca: Authority, token: str, stranger: str) -> None:
    """OFREP over HTTPS with a good token (both headers), an unknown one, and none."""
    import ssl

    context = ssl.create_default_context(cadata=ca.pem.decode())
    for headers, expected in (
        ({"Authorization": f"Bearer {token}"}, 200),
        ({"X-API-Key": token}, 200),
        ({"Authorization": f"Bearer {stranger}"}, 401),
        ({"X-API-Key": stranger}, 401),
        ({}, 401),
    ):
        request = urllib.request.Request(
            f"https://localhost:{port}/ofrep/v1/evaluate/flags/a",
            data=b'{"context": {"targetingKey": "u1"}}',
            headers={"Content-Type": "application/json", **headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == expected, (headers.keys(), status)


def _dump(server: RedisServer) -> str:
    """Every key of the environment and its value, as text."""
    client = server.client(decode_responses=True)
    lines = []
    with contextlib.closing(client):
        for name in sorted(client.scan_iter(match="*")):
            kind = client.type(name)
            if kind == "string":
                value: object = client.get(name)
            elif kind == "hash":
                value = client.hgetall(name)
            elif kind == "stream":
                value = client.xrange(name)
            else:
                value = kind
            lines.append(f"{name}: {value}")
    return "\n".join(lines)
